"""``SplitDataset``: random access to a split's samples, ``dataset[i]``, for your own samplers and tools.

Sample ``i`` is the ``i``-th sample of the split in index order (the loader's global id). Each
shard's member table (the offset of every member, as wids keeps) is built the first time the
shard is touched, so a lookup is one bisection and one ``pread``; remote shards go through the
node's shard cache (``ReadOptions``). It is a plain map-style dataset (``__len__``,
``__getitem__``) that pickles into DataLoader workers without its open files.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..shards.index import SplitIndex, load_index
from ..shards.members import decode_sample
from .epoch import Transform, locate
from .order import space_of
from .reader import ReadOptions, ShardPool

IMAGE_NAME = {"jpg": "image"}
_TAG = 0xACCE55


class SplitDataset:
    """``dataset[i]`` → the decoded sample ``i`` (``image``, masks, ``cls``...; ``__key__``, ``__index__``).

    ``transform(sample, rng)`` runs with a generator seeded from ``(seed, i)``; ``members`` limits
    what is decoded.
    """

    def __init__(self, source: SplitIndex | str | Path, members: tuple[str, ...] | None = None,
                 transform: Transform | None = None, seed: int = 0, read: ReadOptions = ReadOptions()) -> None:
        self.index = source if isinstance(source, SplitIndex) else load_index(source, read.storage_options, read.policy)
        read.check(self.index)
        self.read = read
        self.space = space_of([e.nsamples for e in self.index.shards])
        self.ends = self.space.offsets[1:].tolist()
        self.keep = frozenset(members) if members is not None else None
        self.transform = transform
        self.seed = seed
        self._local = threading.local()

    def __len__(self) -> int:
        return self.space.total

    def _pool(self) -> ShardPool:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = ShardPool(self.index, self.read)
        return pool

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = self.space.total
        if not -n <= i < n:
            raise IndexError(f"sample {i} is outside 0..{n - 1}")
        i %= n
        shard, j = locate(self.space, self.ends, i)
        pool = self._pool()
        sample = decode_sample(pool.read(shard, j), pool.label(shard), self.keep, IMAGE_NAME)
        sample["__index__"] = i
        if self.transform is not None:
            sample = self.transform(sample, np.random.default_rng([_TAG, self.seed, i]))
        return sample

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
