"""Bytes in and out: the one place that knows about paths, URLs, retries and atomic writes.

- ``urls``: is this a URL, which file system serves it, how to join and resolve names.
- ``retry``: one retry policy for every remote read and upload.
- ``read``: whole-object reads (verified against an expected size / sha256) and user JSON files.
- ``atomic``: tmp-then-rename writes of bytes, text, JSON, npy and parquet on a local disk.
- ``output``: where a job's files go, a local folder or an object store, behind one protocol.
"""

from .atomic import atomic_save_npy, atomic_write_bytes, atomic_write_json, atomic_write_parquet, atomic_write_text, fsync_dir
from .output import LocalOutput, Output, RemoteOutput, open_output
from .read import Expect, open_stream, read_bytes, read_json_file, read_local, read_object
from .retry import RetryPolicy, with_retries
from .urls import check_output, filesystem, is_remote, is_url, is_within, join, local_path

__all__ = [
    "Expect", "LocalOutput", "Output", "RemoteOutput", "RetryPolicy", "open_output", "atomic_save_npy",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_parquet",
    "atomic_write_text", "filesystem", "fsync_dir", "is_remote", "is_url", "join", "local_path", "open_stream", "read_bytes",
    "read_json_file", "read_local", "read_object", "with_retries", "check_output", "is_within",
]
