"""The order of one epoch: a pure function of (seed, epoch) over the index's global sample space.

Sample ``g`` is the ``g``-th sample of the split in index order (shard by shard). An epoch's order
is a permutation of ``range(total)`` that depends only on the shard sample counts, the shuffle
options, the seed and the epoch; never on ranks, workers or timing (FFCV's traversal order).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..io import is_remote

_TAG = 0x5DA7A  # domain separation: order streams never collide with transform seeds
_GROUP_TAG = 0x9A0DE  # the run-level (epoch-independent) assignment of shards to node groups
DEFAULT_WINDOW_SHARDS = 4


@dataclass(frozen=True)
class SampleSpace:
    """Global sample ids over shards with the given sample counts (index order)."""

    counts: tuple[int, ...]

    @cached_property
    def offsets(self) -> np.ndarray:
        """``offsets[s]`` is the first global id of shard ``s``; the last entry is the total."""
        return np.concatenate([[0], np.cumsum(np.asarray(self.counts, dtype=np.int64))]).astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.offsets[-1])

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard number, sample number inside the shard) of each global id."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.total):
            raise IndexError(f"sample ids outside 0..{self.total - 1}")
        shard = np.searchsorted(self.offsets[1:], ids, side="right")
        return shard, ids - self.offsets[shard]


@dataclass(frozen=True)
class Shuffle:
    """How an epoch is shuffled.

    ``mode``: ``none`` (index order), ``shards`` (shard order permuted, samples in stored order),
    ``window`` (shards permuted, then every sample displaced randomly within a sliding window of
    ``window`` samples; default window: 4 average shards), ``global`` (a full permutation), or
    ``auto`` (the default): ``global`` when every shard is a local file (random reads are cheap,
    and shards written in source order, e.g. class by class, get fully mixed), ``window`` when
    shards are remote (a reader then needs only the shards overlapping the window).

    ``nodes=C`` (node-local reading, after Streaming's canonical nodes): the shards are dealt
    once per run (seed only, never the epoch) into ``C`` groups of about equal sample counts;
    each group is shuffled on its own with ``mode``, and the epoch interleaves the groups
    position by position (position ``p`` comes from group ``p % C`` while every group has
    samples left, the longer groups' rest at the end). With the loader's node-major partition
    (``partition.node_position``), each of ``C`` physical nodes then reads only its group's
    shards: a node downloads 1/C of the split per epoch, and the same 1/C every epoch.
    """

    mode: str = "auto"
    window: int | None = None
    nodes: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ORDERS and self.mode != "auto":
            raise InputError(f"unknown shuffle mode {self.mode!r}; choose one of {sorted(ORDERS) + ['auto']}")
        if self.window is not None and self.window < 1:
            raise InputError(f"shuffle window must be >= 1 sample, not {self.window}")
        if self.nodes is not None and self.nodes < 1:
            raise InputError(f"shuffle nodes must be >= 1, not {self.nodes}")

    def resolve(self, shard_paths: Sequence[str]) -> "Shuffle":
        """The concrete mode for a split whose shards live at ``shard_paths``."""
        if self.mode != "auto":
            return self
        remote = any(is_remote(p) for p in shard_paths)
        return Shuffle("window" if remote else "global", self.window, self.nodes)

    def resolved_window(self, space: SampleSpace) -> int:
        if self.window is not None:
            return self.window
        nonempty = [c for c in space.counts if c > 0] or [1]
        return max(1, DEFAULT_WINDOW_SHARDS * round(sum(nonempty) / len(nonempty)))

    def params(self, space: SampleSpace) -> dict[str, object]:
        """What determines the order besides seed and epoch (recorded in resume states)."""
        if self.mode == "auto":
            raise ValueError("resolve an 'auto' shuffle against the split's shard paths first")
        window = self.resolved_window(space) if self.mode == "window" else None
        params: dict[str, object] = {"mode": self.mode, "window": window}
        if self.nodes is not None:
            params["nodes"] = self.nodes
        return params


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    if seed < 0 or epoch < 0 or stream < 0:
        raise InputError(f"seed, epoch and stream must be >= 0 (got {seed}, {epoch}, {stream})")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([_TAG, seed, epoch, stream])))


def _index_order(space: SampleSpace, rng: np.random.Generator, window: int) -> np.ndarray:
    return np.arange(space.total, dtype=np.int64)


def _shard_order(space: SampleSpace, rng: np.random.Generator, window: int) -> np.ndarray:
    counts = np.asarray(space.counts, dtype=np.int64)
    perm = rng.permutation(len(counts))
    lengths = counts[perm]
    new_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    shift = np.repeat(space.offsets[:-1][perm] - new_starts, lengths)
    return np.arange(space.total, dtype=np.int64) + shift


def _window_order(space: SampleSpace, rng: np.random.Generator, window: int) -> np.ndarray:
    ids = _shard_order(space, rng, window)
    keys = np.arange(space.total, dtype=np.float64) + rng.random(space.total) * window
    return ids[np.argsort(keys, kind="stable")]


def _global_order(space: SampleSpace, rng: np.random.Generator, window: int) -> np.ndarray:
    return rng.permutation(space.total).astype(np.int64)


ORDERS: dict[str, Callable[[SampleSpace, np.random.Generator, int], np.ndarray]] = {
    "none": _index_order,
    "shards": _shard_order,
    "window": _window_order,
    "global": _global_order,
}


def node_groups(counts: Sequence[int], seed: int, nodes: int) -> list[np.ndarray]:
    """The shards of each node group: shards in a run-seeded order, each to the group with the
    fewest samples so far (so groups hold about equal sample counts); fixed across epochs."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([_GROUP_TAG, seed, nodes])))
    groups: list[list[int]] = [[] for _ in range(nodes)]
    sizes = [0] * nodes
    for s in rng.permutation(len(counts)).tolist():
        g = min(range(nodes), key=lambda k: (sizes[k], k))
        groups[g].append(s)
        sizes[g] += int(counts[s])
    return [np.asarray(g, dtype=np.int64) for g in groups]


def _grouped_order(space: SampleSpace, shuffle: Shuffle, seed: int, epoch: int, stream: int) -> np.ndarray:
    """Each node group shuffled on its own, the groups interleaved position by position."""
    nodes = int(shuffle.nodes or 1)
    parts = []
    for g, shards in enumerate(node_groups(space.counts, seed, nodes)):
        sub = space_of([space.counts[s] for s in shards.tolist()])
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([_TAG, seed, epoch, stream, 1 + g])))
        local = ORDERS[shuffle.mode](sub, rng, shuffle.resolved_window(space))
        shard, inside = sub.locate(local)
        parts.append(space.offsets[shards[shard]] + inside if len(shards) else np.empty(0, dtype=np.int64))
    common = min(len(p) for p in parts)
    head = np.stack([p[:common] for p in parts], axis=1).reshape(-1)  # position p -> group p % nodes
    rests = [p[common:] for p in parts]
    keys = np.concatenate([(np.arange(len(r)) + 0.5) / max(len(r), 1) for r in rests]) if rests else np.empty(0)
    tail = np.concatenate(rests)[np.argsort(keys, kind="stable")] if rests else np.empty(0, dtype=np.int64)
    return np.concatenate([head, tail]).astype(np.int64)


def epoch_order(space: SampleSpace, shuffle: Shuffle, seed: int, epoch: int, stream: int = 0) -> np.ndarray:
    """The epoch's sequence of global sample ids; ``stream`` separates several datasets of a mix.
    An ``auto`` shuffle counts as ``global`` here (resolve it against shard paths first)."""
    if shuffle.mode == "auto":
        shuffle = Shuffle("global", shuffle.window, shuffle.nodes)
    if shuffle.nodes is not None and shuffle.nodes > 1:
        return _grouped_order(space, shuffle, seed, epoch, stream)
    rng = _rng(seed, epoch, stream)
    return ORDERS[shuffle.mode](space, rng, shuffle.resolved_window(space))


def space_of(counts: Sequence[int]) -> SampleSpace:
    if any(c < 0 for c in counts):
        raise InputError("shard sample counts must be >= 0")
    return SampleSpace(tuple(int(c) for c in counts))
