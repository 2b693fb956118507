"""Minimal, deterministic tar I/O for webdataset shards.

Writing: fixed header fields (mtime 0, uid/gid 0, mode 0644) so equal inputs give equal bytes,
with a running sha256 over everything written. Reading: a streaming iterator that groups
consecutive members into samples by key and turns any truncation into a CorruptShardError.
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import BinaryIO, Iterator

from ..errors import CorruptShardError

BLOCK = 512


def split_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is everything before the first dot of the basename."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1 :]


class TarStream:
    """Appends members to an open binary file and hashes the bytes as they go."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._f = fileobj
        self._hash = hashlib.sha256()
        self.bytes_written = 0

    def _emit(self, data: bytes) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.bytes_written += len(data)

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        self._emit(info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict"))
        self._emit(data)
        pad = -len(data) % BLOCK
        if pad:
            self._emit(b"\0" * pad)

    def finish(self) -> str:
        """Write the end-of-archive blocks; return the sha256 of the whole archive."""
        self._emit(b"\0" * (2 * BLOCK))
        return self._hash.hexdigest()


def iter_members(fileobj: BinaryIO, label: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular file in a tar stream, in stored order."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                handle = tar.extractfile(info)
                if handle is None:
                    continue
                data = handle.read()
                if len(data) != info.size:
                    raise CorruptShardError(f"{label}: member {info.name} is truncated")
                yield info.name, data
    except (tarfile.TarError, EOFError) as err:
        raise CorruptShardError(f"{label}: not a readable tar ({err})") from None


def iter_samples(fileobj: BinaryIO, label: str) -> Iterator[dict[str, bytes | str]]:
    """Samples as ``{"__key__": key, ext: bytes, ...}``; members of a key must be contiguous."""
    current: dict[str, bytes | str] | None = None
    seen: set[str] = set()
    for name, data in iter_members(fileobj, label):
        key, ext = split_name(name)
        if current is None or current["__key__"] != key:
            if current is not None:
                yield current
            if key in seen:
                raise CorruptShardError(f"{label}: members of sample {key!r} are not contiguous")
            seen.add(key)
            current = {"__key__": key}
        if ext in current:
            raise CorruptShardError(f"{label}: sample {key!r} has member {ext!r} twice")
        current[ext] = data
    if current is not None:
        yield current
