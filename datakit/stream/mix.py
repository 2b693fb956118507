"""A weighted, deterministic mix of several splits (e.g. LarvSeg: ADE-847 pixel labels + ImageNet-21K
image labels), with mixed batches or per-source batches.

A mix epoch has ``length`` draws; source ``i`` gets exactly ``c_i`` of them (weights apportioned
by largest remainder), taken from that source's own endless sequence of epoch orders (stream
``i + 1``), continuing where the previous mix epoch stopped. Which draw comes from which source
is a seeded permutation of the ``c_i`` labels (per-source mode: of batch-sized chunks). All of it
is a pure function of (seed, epoch), so the loader's partition, resume and tail modes apply as is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..shards.index import SplitIndex, load_index
from .budget import SLACK_SHARDS, fit_shuffle, window_shards
from .epoch import Draws, Transform, _Memo, warn_if_sorted
from .order import Shuffle, epoch_order, space_of
from .reader import ReadOptions

_MIX_TAG = 0x313C


@dataclass(frozen=True)
class MixSource:
    """One split of a mix: its index (or path/URL), weight, and optional own transform and shuffle."""

    index: SplitIndex | str | Path
    weight: float = 1.0
    transform: Transform | None = None
    shuffle: Shuffle | None = field(default=None)


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder, ties to the first)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise InputError(f"mix weights must be finite, >= 0 and not all zero: {list(weights)}")
    exact = total * w / w.sum()
    share = np.floor(exact).astype(np.int64)
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - share[i]), i))
    for i in order[: total - int(share.sum())]:
        share[i] += 1
    return [int(s) for s in share]


class MixPlan:
    """The draws of a mix; ``per_source`` (a batch size) makes every batch come from one source."""

    def __init__(self, sources: Sequence[MixSource], length: int | None = None, per_source: int | None = None,
                 shuffle: Shuffle = Shuffle(), transform: Transform | None = None,
                 read: ReadOptions = ReadOptions()) -> None:
        if not sources:
            raise InputError("a mix needs at least one source")
        indexes = [s.index if isinstance(s.index, SplitIndex) else load_index(s.index, read.storage_options, read.policy)
                   for s in sources]
        self.indexes = tuple(indexes)
        self.spaces = tuple(space_of([e.nsamples for e in ix.shards]) for ix in indexes)
        self.transforms = tuple(s.transform if s.transform is not None else transform for s in sources)
        self.shuffles = tuple(fit_shuffle(s.shuffle or shuffle, ix, sp, read) for s, ix, sp in zip(sources, indexes, self.spaces))
        for ix, sh, sp in zip(indexes, self.shuffles, self.spaces):
            warn_if_sorted(ix, sh, sp)
        self.keeps = tuple(window_shards(sh, sp) + SLACK_SHARDS for sh, sp in zip(self.shuffles, self.spaces))
        empty = [f"{ix.spec.dataset}/{ix.spec.split}" for ix, sp in zip(indexes, self.spaces) if sp.total == 0]
        if empty:
            raise InputError(f"mix sources without samples: {empty}")
        self.weights = tuple(float(s.weight) for s in sources)
        self.per_source = per_source
        total = length if length is not None else sum(sp.total for sp in self.spaces)
        if total < 1 or (per_source is not None and per_source < 1):
            raise InputError(f"mix length ({total}) and per_source batch size must be >= 1")
        if per_source is None:
            self.counts = apportion(total, self.weights)
        else:
            self.counts = [u * per_source for u in apportion(total // per_source, self.weights)]
            if sum(self.counts) == 0:
                raise InputError(f"mix length {total} is shorter than one batch of {per_source}")
        self._memo = _Memo()

    @property
    def length(self) -> int:
        return sum(self.counts)

    def _source_run(self, i: int, seed: int, start: int, count: int) -> np.ndarray:
        """Draws ``start .. start+count`` of source ``i``'s endless sequence of epoch orders."""
        n = self.spaces[i].total
        parts, t = [], start
        while t < start + count:
            sub, pos = divmod(t, n)
            take = min(n - pos, start + count - t)
            parts.append(epoch_order(self.spaces[i], self.shuffles[i], seed, sub, stream=i + 1)[pos : pos + take])
            t += take
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def _make(self, seed: int, epoch: int) -> Draws:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([_MIX_TAG, seed, epoch])))
        k = len(self.counts)
        if self.per_source is None:
            source = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), self.counts))
        else:
            units = [c // self.per_source for c in self.counts]
            source = np.repeat(rng.permutation(np.repeat(np.arange(k, dtype=np.int64), units)), self.per_source)
        sample = np.empty(len(source), dtype=np.int64)
        for i, c in enumerate(self.counts):
            sample[source == i] = self._source_run(i, seed, epoch * c, c)
        return Draws(source, sample)

    def draws(self, seed: int, epoch: int) -> Draws:
        return self._memo.get((seed, epoch), lambda: self._make(seed, epoch))

    def identity(self) -> dict[str, Any]:
        parts = [{"dataset": ix.fingerprint(), "order": sh.params(sp), "weight": w}
                 for ix, sp, sh, w in zip(self.indexes, self.spaces, self.shuffles, self.weights)]
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
        names = ", ".join(f"{ix.spec.dataset}/{ix.spec.split}" for ix in self.indexes)
        return {"dataset": digest, "name": f"mix({names})", "total": self.length,
                "order": {"sources": parts, "per_source": self.per_source, "counts": self.counts}}

    def check(self, batch_size: int, tail: str) -> None:
        if self.per_source is None:
            return
        if batch_size != self.per_source:
            raise InputError(f"per-source batches were planned for batch size {self.per_source}, not {batch_size}")
        if tail == "exact":
            raise InputError("per-source batches need tail='drop' or tail='pad' (an exact last step would split a batch)")


def mix_loader(sources: Sequence[MixSource], batch_size: int, *, per_source: bool = False, length: int | None = None,
               transform: Transform | None = None, **kwargs: Any):
    """``loader`` over a mix; ``kwargs`` are those of ``datakit.stream.loader`` (seed, rank, options...)."""
    from .dataset import StreamOptions, loader

    options: StreamOptions = kwargs.pop("options", StreamOptions(tail="drop" if per_source else "exact"))
    plan = MixPlan(sources, length, batch_size if per_source else None, options.shuffle, transform, options.read)
    return loader(plan, batch_size, options=options, **kwargs)
