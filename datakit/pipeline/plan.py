"""From a split's records to shard tasks, streamed: unique keys, a seeded order, cuts by count and bytes.

1. Keys become webdataset keys (``sanitize_key``); a key already used in the split turns the later
   record into a ``duplicate_key`` failure (keys are remembered as 8-byte hashes, so 100M keys
   cost 0.8 GB, not their strings).
2. ``order="permuted"`` (the default) sorts records by a seeded hash of their key within windows of
   ``window`` records, so a class-by-class folder gives shards of many classes; ``order="source"``
   keeps the listing's order. Either is a pure function of the records and the seed, and appending
   inputs only reorders the last window.
3. A task is a contiguous run of at most ``shard_size`` records and, by size hints, ``shard_bytes``.

Only one window of records is held at a time; the build takes tasks as they come.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import InputError
from ..shards.writer import sanitize_key
from ..sources.base import Problem, Record
from .fingerprint import Entry

ORDERS = ("permuted", "source")
DEFAULT_WINDOW = 1 << 18  # 262,144 records: ~200 ImageNet classes per window, a few hundred MB at most


@dataclass(frozen=True)
class ShardTask:
    """One shard to write: its split, position, records; the build stamps the fingerprint and entries."""

    split: str
    index: int
    records: tuple[Record[Any], ...]
    fingerprint: str = ""
    entries: tuple[Entry, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"

    @property
    def size(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class PlanOptions:
    shard_size: int = 1000
    shard_bytes: int = 1 << 30
    order: str = "permuted"
    seed: int = 0
    window: int = DEFAULT_WINDOW

    def check(self) -> None:
        if self.shard_size < 1 or self.shard_bytes < 1 or self.window < 1:
            raise InputError("shard size, shard bytes and the order window must be >= 1")
        if self.order not in ORDERS:
            raise InputError(f"order must be one of {list(ORDERS)}, not {self.order!r}")

    def record_order(self) -> dict[str, Any]:
        """How the records were ordered, for the index (the loader warns about class-sorted shards)."""
        if self.order == "source":
            return {"kind": "source"}
        return {"kind": "permuted", "seed": self.seed, "window": self.window}


class KeySet:
    """Which keys a split has used, as 8-byte hashes: a small set of recent ones, merged into a sorted
    array every ``flush`` keys. The hash is Python's own string hash: it lives for one planning run in
    one process, where it is stable, and two keys share one with probability 2^-64."""

    def __init__(self, flush: int = 1 << 20) -> None:
        self._recent: set[int] = set()
        self._sorted = np.zeros(0, np.uint64)
        self._flush = flush

    def add(self, key: str) -> bool:
        """True when ``key`` is new (and is now remembered)."""
        h = hash(key) & 0xFFFFFFFFFFFFFFFF
        if h in self._recent:
            return False
        if self._sorted.size:
            at = int(np.searchsorted(self._sorted, np.uint64(h)))
            if at < self._sorted.size and int(self._sorted[at]) == h:
                return False
        self._recent.add(h)
        if len(self._recent) >= self._flush:
            self._sorted = np.union1d(self._sorted, np.fromiter(self._recent, np.uint64, len(self._recent)))
            self._recent.clear()
        return True


def unique_keys(records: Iterable[Record[Any]], split: str) -> Iterator[Record[Any]]:
    """Records with webdataset keys; a repeated key becomes a ``duplicate_key`` failure."""
    seen = KeySet()
    for rec in records:
        key = sanitize_key(rec.key)
        if not seen.add(key):
            yield Record(key, Problem("duplicate_key", f"{split}: {rec.key!r} gives key {key!r}, already used"), 0)
            continue
        yield rec if key == rec.key else Record(key, rec.payload, rec.size_hint, rec.inputs)


def _order_hasher(seed: int) -> "hashlib.blake2b":
    """A keyed blake2b for the permutation (copying a keyed hasher is cheaper than keying one per record)."""
    return hashlib.blake2b(digest_size=8, key=seed.to_bytes(8, "little"))


def ordered(records: Iterable[Record[Any]], opts: PlanOptions) -> Iterator[Record[Any]]:
    """The records in the plan's order (see the module docstring)."""
    if opts.order == "source":
        yield from records
        return
    window: list[Record[Any]] = []
    for rec in records:
        window.append(rec)
        if len(window) >= opts.window:
            yield from _shuffled(window, opts.seed)
            window = []
    yield from _shuffled(window, opts.seed)


def _shuffled(window: list[Record[Any]], seed: int) -> list[Record[Any]]:
    base = _order_hasher(seed)

    def rank(rec: Record[Any]) -> tuple[bytes, str]:
        h = base.copy()
        h.update(rec.key.encode())
        return h.digest(), rec.key

    return sorted(window, key=rank)


def cut_tasks(split: str, records: Iterable[Record[Any]], opts: PlanOptions) -> Iterator[ShardTask]:
    """Contiguous runs of at most ``shard_size`` records and (by size hints) ``shard_bytes``."""
    batch: list[Record[Any]] = []
    size = index = 0
    for rec in records:
        if batch and (len(batch) >= opts.shard_size or size + rec.size_hint > opts.shard_bytes):
            yield ShardTask(split, index, tuple(batch))
            index, batch, size = index + 1, [], 0
        batch.append(rec)
        size += rec.size_hint
    if batch:
        yield ShardTask(split, index, tuple(batch))


def plan_tasks(split: str, records: Iterable[Record[Any]], opts: PlanOptions) -> Iterator[ShardTask]:
    """The shard tasks of one split, streamed."""
    opts.check()
    return cut_tasks(split, ordered(unique_keys(records, split), opts), opts)
