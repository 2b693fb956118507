"""What a stream draws in an epoch: a sequence of (dataset, sample id) pairs, pure in (seed, epoch).

``SinglePlan`` is one split (its epoch order); ``mix.MixPlan`` interleaves several. The loader
only needs a plan's length, its draws for an epoch, and an identity that a resume state must
match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

import warnings

from ..shards.index import SplitIndex
from .budget import SLACK_SHARDS, fit_shuffle, window_shards
from .checks import looks_class_sorted
from .order import SampleSpace, Shuffle, epoch_order, space_of
from .reader import ReadOptions

Transform = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]


@dataclass(frozen=True)
class Draws:
    """The epoch's draws: ``sample[p]`` from dataset ``source[p]`` (``source`` None: all from 0)."""

    source: np.ndarray | None
    sample: np.ndarray

    def at(self, position: int) -> tuple[int, int]:
        src = 0 if self.source is None else int(self.source[position])
        return src, int(self.sample[position])


class EpochPlan(Protocol):
    """The contract the loader relies on."""

    indexes: tuple[SplitIndex, ...]
    spaces: tuple[SampleSpace, ...]
    transforms: tuple[Transform | None, ...]
    keeps: tuple[int, ...]  # per source: shards a reader holds open at once (the order's working set)
    shuffles: tuple[Shuffle, ...]  # per source: the concrete shuffle

    @property
    def length(self) -> int: ...

    def draws(self, seed: int, epoch: int) -> Draws: ...

    def identity(self) -> dict[str, Any]: ...

    def check(self, batch_size: int, tail: str) -> None: ...


class _Memo:
    """Keeps the last epoch's draws in a process (a cache; dropped when the plan is pickled)."""

    def __init__(self) -> None:
        self.key: tuple[int, int] | None = None
        self.value: Draws | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"key": None, "value": None}

    def get(self, key: tuple[int, int], make: Callable[[], Draws]) -> Draws:
        if self.key != key or self.value is None:
            self.value, self.key = make(), key
        return self.value


class SinglePlan:
    """One split: the draws are the split's epoch order."""

    def __init__(self, index: SplitIndex, shuffle: Shuffle = Shuffle(), transform: Transform | None = None,
                 read: ReadOptions = ReadOptions()) -> None:
        self.indexes: tuple[SplitIndex, ...] = (index,)
        self.spaces: tuple[SampleSpace, ...] = (space_of([e.nsamples for e in index.shards]),)
        self.transforms: tuple[Transform | None, ...] = (transform,)
        self.shuffle = fit_shuffle(shuffle, index, self.spaces[0], read)
        warn_if_sorted(index, self.shuffle, self.spaces[0])
        self.keeps: tuple[int, ...] = (window_shards(self.shuffle, self.spaces[0]) + SLACK_SHARDS,)
        self.shuffles: tuple[Shuffle, ...] = (self.shuffle,)
        self._memo = _Memo()

    @property
    def length(self) -> int:
        return self.spaces[0].total

    def draws(self, seed: int, epoch: int) -> Draws:
        return self._memo.get((seed, epoch), lambda: Draws(None, epoch_order(self.spaces[0], self.shuffle, seed, epoch)))

    def identity(self) -> dict[str, Any]:
        index = self.indexes[0]
        return {
            "dataset": index.fingerprint(),
            "name": f"{index.spec.dataset}/{index.spec.split}",
            "total": self.length,
            "order": self.shuffle.params(self.spaces[0]),
        }

    def check(self, batch_size: int, tail: str) -> None:
        return None


def warn_if_sorted(index: SplitIndex, shuffle: Shuffle, space: SampleSpace) -> None:
    """Warn when class-sorted shards meet a shuffle that mixes only a few shards at a time."""
    if shuffle.mode == "global" or window_shards(shuffle, space) >= len(space.counts) or not looks_class_sorted(index):
        return
    warnings.warn(f"{index.spec.dataset}/{index.spec.split}: shards look class-sorted (written class by class) and the "
                  f"{shuffle.mode} shuffle mixes about {window_shards(shuffle, space)} shard(s) at a time, so batches will hold "
                  f"few classes; use Shuffle('global') on local data, a larger cache budget (it sizes the window), or "
                  f"rebuild the split with a permuted record order", RuntimeWarning, stacklevel=3)


def locate(space: SampleSpace, ends: Sequence[int], sample: int) -> tuple[int, int]:
    """(shard, sample in shard) of one global id, by bisection over the shard end offsets."""
    from bisect import bisect_right

    shard = bisect_right(ends, sample)
    return shard, sample - int(space.offsets[shard])
