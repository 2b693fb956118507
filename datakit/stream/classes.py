"""Per-sample class sets of a split, for class-aware samplers (``sampling``).

A ``cls`` split's class set is its image label; a mask split's is the set of ids in its first
mask member (or ``member``), without the ignore id. Reading them takes one pass over the split
(the ``cls`` members only, or every mask decoded), so the result is kept in a sidecar file
beside the index, ``index.classes-<fingerprint>.npz`` (a remote split's goes to the shard cache
folder), written atomically; a rebuilt split has a new fingerprint and gets a new sidecar. It
holds ``offsets`` (n + 1 int64) and ``classes`` (the concatenated sorted class ids), CSR-style:
sample ``i``'s classes are ``classes[offsets[i]:offsets[i + 1]]``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_write_bytes, is_remote, local_path
from ..progress import ProgressBar
from ..shards.codecs import decode_mask
from ..shards.index import SplitIndex
from .cache import default_cache_dir
from .reader import ReadOptions, ShardPool


@dataclass(frozen=True)
class ClassSets:
    """CSR class sets: sample ``i`` holds ``classes[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, i: int) -> np.ndarray:
        return self.classes[self.offsets[i] : self.offsets[i + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def sidecar_path(index: SplitIndex, read: ReadOptions = ReadOptions()) -> Path:
    name = f"index.classes-{index.fingerprint()}.npz"
    if is_remote(index.base):
        return Path(read.cache_dir or default_cache_dir()) / name
    return Path(local_path(index.base)) / name


def _member_of(index: SplitIndex, member: str | None) -> str:
    if member is not None:
        return member
    if index.spec.masks:
        return index.spec.masks[0].ext
    if index.spec.cls:
        return "cls"
    raise InputError(f"{index.spec.dataset}/{index.spec.split} has neither masks nor cls labels to sample classes by")


def _classes_of(data: bytes | None, member: str, ignore: int) -> np.ndarray:
    if data is None:
        return np.empty(0, dtype=np.int64)
    if member == "cls":
        return np.asarray([int(data)], dtype=np.int64)
    ids = np.unique(decode_mask(bytes(data))).astype(np.int64)
    return ids[ids != ignore]


def compute_class_sets(index: SplitIndex, member: str | None = None, read: ReadOptions = ReadOptions(),
                       progress: bool = False) -> ClassSets:
    """One pass over the split: each sample's class set from ``member`` (default: first mask, else cls)."""
    member = _member_of(index, member)
    pool = ShardPool(index, read, keep=2)
    sets: list[np.ndarray] = []
    with ProgressBar(index.total, f"class sets of {index.spec.dataset}/{index.spec.split}", progress) as bar:
        for shard, entry in enumerate(index.shards):
            for i in range(entry.nsamples):
                sets.append(_classes_of(pool.read_member(shard, i, member), member, index.spec.ignore_id))
            bar.advance(entry.nsamples)
    pool.close()
    sizes = np.asarray([len(s) for s in sets], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    classes = np.concatenate(sets) if sets else np.empty(0, dtype=np.int64)
    return ClassSets(offsets, classes.astype(np.int64))


def class_sets(index: SplitIndex, member: str | None = None, read: ReadOptions = ReadOptions(),
               progress: bool = False) -> ClassSets:
    """The split's class sets: from the sidecar when one matches the index, else computed and saved."""
    path = sidecar_path(index, read)
    tag = f"{index.fingerprint()}:{_member_of(index, member)}"
    if path.exists():
        try:
            with np.load(path) as data:
                if str(data["tag"]) == tag and len(data["offsets"]) == index.total + 1:
                    return ClassSets(data["offsets"], data["classes"])
        except (OSError, ValueError, KeyError):
            pass  # unreadable or for another member: recompute and replace it
    sets = compute_class_sets(index, member, read, progress)
    buf = io.BytesIO()
    np.savez(buf, offsets=sets.offsets, classes=sets.classes, tag=np.asarray(tag))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return sets
