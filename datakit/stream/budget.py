"""Size the shuffle window from the shard budget, and refuse budgets the window cannot live in.

A window shuffle of ``window`` samples reads, at any moment, from the shards overlapping the
last ``window`` positions: ``ceil(window / average shard)`` shards, plus the one being entered
and one downloaded ahead. So a node's disk cache (or, with ``cache="memory"``, each process)
must hold ``(window shards + 2) x largest shard`` bytes, or shards are evicted before their last
sample is read and downloaded again (42 GB moved to read 237 MB once, in the issue that led
here). Remote data with the default ``auto`` shuffle gets a global shuffle when the whole split
fits the budget, and otherwise a window of half the shards the budget holds: the other half is
for the batches in flight (each loader worker runs a few batches ahead, each a global step on),
which ``check_in_flight`` compares with the budget once the loader knows its workers. The window
depends only on the budget, never on the topology, so the order survives an elastic resume; the
budget (``cache_bytes``) must therefore be the same on every node and across resumes, or set
the window explicitly.
"""

from __future__ import annotations

import math
import warnings

from ..errors import InputError
from ..io import is_remote
from ..shards.index import SplitIndex
from .order import SampleSpace, Shuffle
from .reader import ReadOptions

SLACK_SHARDS = 2  # the shard being entered and one read ahead


def _average(space: SampleSpace) -> float:
    nonempty = [c for c in space.counts if c > 0] or [1]
    return sum(nonempty) / len(nonempty)


def window_shards(shuffle: Shuffle, space: SampleSpace) -> int:
    """How many shards the order reads from at once (before the slack); with node groups, what
    one node reads from its group."""
    if shuffle.mode == "global":
        return math.ceil(len(space.counts) / (shuffle.nodes or 1))
    if shuffle.mode == "window":
        return max(1, math.ceil(shuffle.resolved_window(space) / _average(space)))
    return 1


def fit_shuffle(shuffle: Shuffle, index: SplitIndex, space: SampleSpace, read: ReadOptions) -> Shuffle:
    """The concrete shuffle for this split: ``auto`` resolved, a remote default window sized from
    the budget; an InputError when the budget cannot hold the order's working set."""
    paths = [index.shard_path(e) for e in index.shards]
    if not any(is_remote(p) for p in paths) or not index.shards:
        return shuffle.resolve(paths)
    budget, largest = read.budget(index), max(1, max(e.filesize for e in index.shards))
    what = "cache_bytes" if read.cache == "disk" else "memory_bytes"
    share = index.total_bytes if not shuffle.nodes else min(index.total_bytes, index.total_bytes // shuffle.nodes + largest)
    if shuffle.mode == "auto" and share <= budget:
        return Shuffle("global", None, shuffle.nodes)
    if shuffle.mode in ("auto", "window") and shuffle.window is None:
        fit = min((budget // largest - SLACK_SHARDS) // 2, len(index.shards))
        if fit < 1:
            raise InputError(f"{what}={budget} holds {budget // largest} shard(s) of up to {largest} bytes; a windowed "
                             f"read needs at least {2 * (1 + SLACK_SHARDS) * largest} (the window's shard + {SLACK_SHARDS}, "
                             "and as much again for batches in flight)")
        shuffle = Shuffle("window", max(1, int(fit * _average(space))), shuffle.nodes)
    need = min(share, (window_shards(shuffle, space) + SLACK_SHARDS) * largest)
    if need > budget:
        raise InputError(
            f"{what}={budget} is too small for the {shuffle.mode} shuffle of {index.spec.dataset}/{index.spec.split}: it "
            f"reads from {window_shards(shuffle, space)} + {SLACK_SHARDS} shards of up to {largest} bytes at once, so shards "
            f"would be downloaded again and again; give {what} >= {need} or a smaller Shuffle window")
    return shuffle


def check_in_flight(index: SplitIndex, shuffle: Shuffle, space: SampleSpace, read: ReadOptions, samples: int) -> None:
    """Warn when the window plus ``samples`` positions in flight need more shards than the budget
    holds (each would then be downloaded more than once per epoch)."""
    paths = [index.shard_path(e) for e in index.shards]
    if not index.shards or not any(is_remote(p) for p in paths):
        return
    largest = max(1, max(e.filesize for e in index.shards))
    shards = window_shards(shuffle, space) + math.ceil(samples / _average(space)) + SLACK_SHARDS
    need, budget = min(index.total_bytes, shards * largest), read.budget(index)
    if need > budget:
        what = "cache_bytes" if read.cache == "disk" else "memory_bytes"
        warnings.warn(f"{index.spec.dataset}/{index.spec.split}: the shuffle window and the ~{samples} samples in flight "
                      f"(global batch x workers x batches each makes ahead) read from ~{shards} shards of up to {largest} "
                      f"bytes, more than {what}={budget}: shards will be downloaded more than once per epoch; give "
                      f"{what} >= {need}", RuntimeWarning, stacklevel=3)
