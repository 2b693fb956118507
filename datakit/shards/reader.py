"""Read back a split's shards: open a shard (local or URL), iterate and decode its samples."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator

import numpy as np

from ..errors import CorruptShardError, InputError
from ..io import open_stream
from .members import decode_sample
from .index import SplitIndex
from .tario import iter_samples


class HashingReader:
    """A read-only file wrapper that hashes and counts every byte read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


@contextmanager
def open_shard(path: str) -> Iterator[BinaryIO]:
    """The one way to stream a shard (a local path or any URL): a missing or unreadable shard is a
    CorruptShardError naming it."""
    try:
        with open_stream(path) as f:
            yield f
    except InputError as err:
        raise CorruptShardError(f"{path}: cannot open shard ({err})") from None


def iter_shard(path: str) -> Iterator[dict[str, Any]]:
    """The raw samples (``{"__key__": key, ext: bytes}``) of one shard, in stored order."""
    with open_shard(path) as f:
        yield from iter_samples(f, path)


def iter_split(index: SplitIndex, decode: bool = True, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Every sample of a split in stored order (decoded unless ``decode=False``)."""
    seen = 0
    for entry in index.shards:
        with open_shard(index.shard_path(entry)) as f:
            for raw in iter_samples(f, index.shard_path(entry)):
                yield decode_sample(raw, entry.url) if decode else raw
                seen += 1
                if limit is not None and seen >= limit:
                    return


def mask_array(sample: dict[str, Any], ext: str = "seg.png") -> np.ndarray | None:
    return sample.get(ext)
