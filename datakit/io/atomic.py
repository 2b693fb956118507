"""Atomic local writes: every file datakit writes appears whole or not at all.

The data goes to ``<name>.tmp-<pid>`` in the same folder (unique per process, so ranks writing the
same file never share a temp file), is optionally fsynced, and is renamed into place. With
``fsync=True`` the folder is fsynced after the rename too, so the new name survives a power cut.
A full disk or any other OS error removes the temp file and is raised as a one-line InputError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable

from ..errors import InputError


def temp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def fsync_dir(folder: str | Path) -> None:
    """Persist a folder's entries (after a rename); a no-op where folders cannot be opened."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: str | Path, write: Callable[[BinaryIO], None], fsync: bool = False) -> Path:
    """Run ``write(file)`` on a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:  # a failing writer or Ctrl-C: no temp file is left behind either
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    def write(fh: BinaryIO) -> None:
        fh.write(data)

    return atomic_write_with(path, write, fsync)


def atomic_write_text(path: str | Path, text: str, fsync: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), fsync)


def json_bytes(obj: Any) -> bytes:
    """The one JSON serialisation of datakit's files: sorted keys, one-space indent, final newline."""
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def atomic_write_json(path: str | Path, obj: Any, fsync: bool = False) -> Path:
    return atomic_write_bytes(path, json_bytes(obj), fsync)


def atomic_save_npy(path: str | Path, arr: Any, fsync: bool = False) -> Path:
    import numpy as np

    return atomic_write_with(path, lambda fh: np.save(fh, arr, allow_pickle=False), fsync)


def atomic_write_parquet(path: str | Path, table: Any, fsync: bool = False) -> Path:
    """A pyarrow Table as a parquet file."""
    import pyarrow.parquet as pq

    return atomic_write_with(path, lambda fh: pq.write_table(table, fh), fsync)


def copy_atomic(src: str | Path, dst: str | Path, fsync: bool = False) -> Path:
    """A file copied under a temp name and renamed (a torn copy never looks whole)."""
    import shutil

    def write(fh: BinaryIO) -> None:
        with open(src, "rb") as f:
            shutil.copyfileobj(f, fh, 1 << 20)

    return atomic_write_with(dst, write, fsync)
