"""Class-aware epoch plans for large vocabularies (LarvSeg's 21K classes, ADE-847's long tail).

Both are ``EpochPlan``s: their draws are a pure function of (seed, epoch), so the loader's
partition over ranks x workers, its tail modes and its elastic resume apply unchanged.

- ``repeat_factor`` (LVIS, Gupta et al. 2019): class ``c`` present in a fraction ``f_c`` of the
  samples gets ``r_c = max(1, sqrt(threshold / f_c))``; a sample repeats ``r_i = max r_c`` over its
  classes. An epoch holds ``floor(r_i)`` copies of each sample plus one more for a seeded choice of
  ``round(sum(frac r_i))`` samples (weighted by the fractions), so its length is the same every
  epoch; the copies are then fully shuffled.
- ``class_balanced``: each of ``length`` draws (default: the split's size) picks a class with
  probability proportional to ``count_c ** power`` (``power=0``: uniform over classes), then a
  sample containing it uniformly. Samples without any class (all-ignore masks) are never drawn.

Class sets come from ``classes.class_sets`` (a cached one-time pass). Draws touch any shard at
any time, as a global shuffle does: remote data must fit the shard cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..shards.index import SplitIndex
from .budget import SLACK_SHARDS, fit_shuffle
from .classes import ClassSets, class_sets
from .epoch import Draws, Transform, _Memo
from .order import SampleSpace, Shuffle, space_of
from .reader import ReadOptions

_TAG = 0x5A3B1E
KINDS = ("repeat_factor", "class_balanced")


@dataclass(frozen=True)
class Sampling:
    """``kind``: repeat_factor | class_balanced; ``threshold`` (repeat factor), ``power`` and
    ``length`` (class-balanced); ``member``: where class sets come from (default: first mask, else cls)."""

    kind: str = "repeat_factor"
    threshold: float = 0.001
    power: float = 0.0
    length: int | None = None
    member: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown sampling {self.kind!r}; choose one of {KINDS}")
        if not self.threshold > 0 or (self.length is not None and self.length < 1):
            raise InputError("sampling threshold must be > 0 and length >= 1")


def repeat_factors(sets: ClassSets, threshold: float) -> np.ndarray:
    """LVIS repeat factor of every sample (1.0 for samples without classes)."""
    n = len(sets)
    owner = np.repeat(np.arange(n), sets.sizes())
    ids, inverse = np.unique(sets.classes, return_inverse=True)
    present = np.bincount(inverse, minlength=len(ids))  # a sample's classes are unique: samples per class
    per_class = np.maximum(1.0, np.sqrt(threshold / np.maximum(present / max(n, 1), 1e-12)))
    factors = np.ones(n)
    if ids.size:
        np.maximum.at(factors, owner, per_class[inverse])
    return factors


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([_TAG, seed, epoch])))


class SampledPlan:
    """An epoch plan drawing one split's samples by class (see the module docstring)."""

    def __init__(self, index: SplitIndex, sampling: Sampling = Sampling(), transform: Transform | None = None,
                 read: ReadOptions = ReadOptions(), sets: ClassSets | None = None) -> None:
        self.indexes: tuple[SplitIndex, ...] = (index,)
        self.spaces: tuple[SampleSpace, ...] = (space_of([e.nsamples for e in index.shards]),)
        self.transforms: tuple[Transform | None, ...] = (transform,)
        # draws go anywhere, as a global shuffle's do: refuse a remote cache that cannot hold the split
        self.shuffles: tuple[Shuffle, ...] = (fit_shuffle(Shuffle("global"), index, self.spaces[0], read),)
        self.keeps: tuple[int, ...] = (len(index.shards) + SLACK_SHARDS,)
        self.sampling = sampling
        self.sets = sets if sets is not None else class_sets(index, sampling.member, read)
        if len(self.sets) != index.total:
            raise InputError(f"class sets hold {len(self.sets)} samples, the split {index.total}")
        self._memo = _Memo()
        if sampling.kind == "repeat_factor":
            self.factors = repeat_factors(self.sets, sampling.threshold)
            whole = np.floor(self.factors)
            self._base, self._frac = whole.astype(np.int64), self.factors - whole
            self._length = int(self._base.sum() + round(float(self._frac.sum())))
        else:
            self._prepare_balanced()
        if self._length < 1:
            raise InputError(f"{index.spec.dataset}/{index.spec.split}: no sample has a class to sample by")

    def _prepare_balanced(self) -> None:
        sets = self.sets
        owner = np.repeat(np.arange(len(sets)), sets.sizes())
        order = np.argsort(sets.classes, kind="stable")
        self._members = owner[order]  # samples grouped by class
        self._class_ids, self._starts, counts = np.unique(sets.classes[order], return_index=True, return_counts=True)
        self._counts = counts.astype(np.int64)
        weights = self._counts.astype(np.float64) ** self.sampling.power
        self._p = weights / weights.sum() if weights.size else weights
        self._length = (self.sampling.length or self.indexes[0].total) if self._counts.size else 0

    @property
    def length(self) -> int:
        return self._length

    def _make(self, seed: int, epoch: int) -> Draws:
        rng = _rng(seed, epoch)
        if self.sampling.kind == "repeat_factor":
            extra = int(self._length - self._base.sum())
            keys = np.where(self._frac > 0, np.log(rng.random(len(self._frac))) / np.maximum(self._frac, 1e-300), -np.inf)
            chosen = np.argpartition(-keys, extra)[:extra] if 0 < extra < len(keys) else np.arange(len(keys))[:extra]
            counts = self._base.copy()
            counts[chosen] += 1
            return Draws(None, rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int64), counts)))
        cls = rng.choice(len(self._counts), size=self._length, p=self._p)
        pick = (rng.random(self._length) * self._counts[cls]).astype(np.int64)
        return Draws(None, self._members[self._starts[cls] + pick].astype(np.int64))

    def draws(self, seed: int, epoch: int) -> Draws:
        return self._memo.get((seed, epoch), lambda: self._make(seed, epoch))

    def identity(self) -> dict[str, Any]:
        index = self.indexes[0]
        params = asdict(self.sampling)
        digest = hashlib.sha256(json.dumps([index.fingerprint(), params], sort_keys=True).encode()).hexdigest()[:16]
        return {"dataset": index.fingerprint(), "name": f"{index.spec.dataset}/{index.spec.split}", "total": self.length,
                "order": {"sampling": params, "digest": digest}}

    def check(self, batch_size: int, tail: str) -> None:
        return None
