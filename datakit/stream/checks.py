"""Checks a stream runs at construction: fail fast on missing or resized local shards, warn about
tars the index does not list, and warn when shards look class-sorted for a shuffle that mixes
only a few shards at a time."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import CorruptShardError, InputError
from ..io import is_remote, local_path
from ..shards.index import SplitIndex
from ..shards.scan import scan_samples

SORTED_RUNS = 0.5  # share of neighbouring samples with the same class above which a shard counts as sorted
PROBE = 64  # samples read per probed shard


def check_local_shards(index: SplitIndex, skip: bool) -> None:
    """Stat every local shard: a missing one is an InputError, a size unlike the index's a
    CorruptShardError (with ``skip``: a warning; the reader then skips it). Stray tars warn."""
    missing, resized, folders = [], [], set()
    for e in index.shards:
        path = index.shard_path(e)
        if is_remote(path):
            continue
        p = Path(local_path(path))
        folders.add(p.parent)
        try:
            size = os.stat(p).st_size
        except FileNotFoundError:
            missing.append(str(p))
            continue
        if e.filesize > 0 and size != e.filesize:
            resized.append(f"{p}: {size} bytes on disk, the index says {e.filesize} (truncated or replaced)")
    name = f"{index.spec.dataset}/{index.spec.split}"
    if missing and not skip:
        raise InputError(f"{name}: {len(missing)} shard(s) listed in the index are missing, e.g. shard not found: {missing[0]}")
    if resized and not skip:
        raise CorruptShardError(f"{name}: {len(resized)} shard(s) differ from the index: {resized[0]}")
    if missing or resized:
        warnings.warn(f"{name}: skipping {len(missing) + len(resized)} unreadable shard(s): {(missing + resized)[0]}",
                      RuntimeWarning, stacklevel=3)
    _warn_strays(index, folders)


def _warn_strays(index: SplitIndex, folders: set[Path]) -> None:
    listed = {Path(local_path(index.shard_path(e))).resolve() for e in index.shards}
    strays = sorted(str(p) for folder in folders for p in folder.glob("*.tar") if p.resolve() not in listed)
    if strays:
        warnings.warn(f"{len(strays)} tar file(s) beside the index are not listed in it and will not be read, e.g. "
                      f"{strays[0]} (a stale or unfinished build?)", RuntimeWarning, stacklevel=3)


def _cls_runs(path: str) -> float | None:
    """Share of neighbouring samples with the same ``cls`` among a shard's first samples."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        spans = scan_samples(lambda off, n: os.pread(fd, n, off), size, path)[:PROBE]
        labels = []
        for span in spans:
            member = next(((off, n) for ext, off, n in span.members if ext == "cls"), None)
            if member is None:
                return None
            labels.append(int(os.pread(fd, member[1], span.start + member[0])))
    except (CorruptShardError, ValueError, OSError):
        return None
    finally:
        os.close(fd)
    if len(labels) < 2:
        return None
    arr = np.asarray(labels)
    return float((arr[1:] == arr[:-1]).mean())


def looks_class_sorted(index: SplitIndex) -> bool:
    """True when the split's records were written class by class: the index says so
    (``extra["record_order"]["kind"] == "source"`` for an image-label split), or, without that
    record, a few local shards hold long runs of one ``cls``."""
    order = index.extra.get("record_order")
    if isinstance(order, dict) and order.get("kind") == "permuted":
        return False
    if not index.spec.cls:
        return False
    probes = [e for e in index.shards if e.nsamples > 1]
    probes = [probes[i] for i in sorted({0, len(probes) // 2, len(probes) - 1})] if probes else []
    local = [local_path(index.shard_path(e)) for e in probes if not is_remote(index.shard_path(e))]
    runs = [r for r in map(_cls_runs, local) if r is not None]
    if runs:
        return float(np.median(runs)) > SORTED_RUNS
    return isinstance(order, dict) and order.get("kind") == "source"
