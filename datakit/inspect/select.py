"""Which samples ``show`` draws: the first ones, a seeded random draw, or those showing given classes.

Samples are read raw through ``iter_split`` and only the chosen ones are fully decoded; a class
filter decodes just the label members (mask, ``cls``, ``json``) while it scans, with progress.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressBar
from ..shards.index import ShardEntry, SplitIndex
from ..shards.members import decode_sample
from ..shards.reader import iter_split
from ..shards.spec import ClassTable, SplitSpec


@dataclass(frozen=True)
class Choice:
    """How many samples, in which order, and which classes they must show (any of them)."""

    count: int = 16
    shuffle: bool = False
    seed: int = 0
    classes: tuple[str, ...] = ()
    mask: str | None = None
    progress: bool = True


def resolve_classes(table: ClassTable | None, names: tuple[str, ...]) -> set[int]:
    """Class names (case-insensitive) or numeric ids to ids; an unknown name is a one-line error."""
    if not names:
        return set()
    if table is None:
        raise InputError("--classes: this split has no class table")
    by_name: dict[str, set[int]] = {}
    for e in table.entries:
        by_name.setdefault(e.name.lower(), set()).add(e.id)
    ids: set[int] = set()
    known = table.names()
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            if name.lower() in by_name:
                ids |= by_name[name.lower()]
            elif name.isdigit() and int(name) in known:
                ids.add(int(name))
            else:
                close = difflib.get_close_matches(name.lower(), list(by_name), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise InputError(f"--classes: no class {name!r} in {len(known)} classes{hint}")
    return ids


def ignore_of(spec: SplitSpec, mask: str | None) -> int | None:
    """The ignore id applies to the default (semantic) mask; other masks (VOC saliency 0/255) have none."""
    return spec.ignore_id if mask is not None and mask == spec.mask_ext() else None


def sample_classes(sample: dict[str, Any], mask: str | None, ignore: int | None) -> set[int]:
    """The class ids a decoded sample shows: its mask values (not ignore), its ``cls``, its instances."""
    out: set[int] = set()
    if mask is not None and mask in sample:
        out |= {int(i) for i in np.unique(sample[mask])} - {ignore}
    if "cls" in sample:
        out.add(int(sample["cls"]))
    meta = sample.get("json")
    instances = meta.get("instances") if isinstance(meta, dict) else None
    if isinstance(instances, list):  # COCO-20K lists instances; COCO-2017 semantic stores only their count
        out |= {int(i["category_id"]) for i in instances if isinstance(i, dict) and "category_id" in i}
    return out


def _shard_raw(index: SplitIndex, entry: ShardEntry) -> Iterator[dict[str, Any]]:
    return iter_split(replace(index, shards=(entry,)), decode=False)


def _decode_at(index: SplitIndex, positions: list[int]) -> list[dict[str, Any]]:
    """Decode the samples at the given split positions (reading only the shards that hold them), in that order."""
    wanted = set(positions)
    found: dict[int, dict[str, Any]] = {}
    start = 0
    for entry in index.shards:
        stop = start + entry.nsamples
        if any(start <= p < stop for p in wanted):
            for pos, raw in enumerate(_shard_raw(index, entry), start):
                if pos in wanted:
                    found[pos] = decode_sample(raw, entry.url)
        start = stop
    return [found[p] for p in positions if p in found]


def _scan(index: SplitIndex, ids: set[int], choice: Choice, mask: str | None) -> list[int]:
    """Positions of the samples showing any of ``ids``; stops early when order does not matter."""
    keep = frozenset(m for m in (mask, "cls", "json") if m)
    ignore = ignore_of(index.spec, mask)
    hits: list[int] = []
    pos = 0
    with ProgressBar(index.total, f"show: scanning {index.spec.dataset}/{index.spec.split}",
                     enabled=choice.progress) as bar:
        for entry in index.shards:
            for raw in _shard_raw(index, entry):
                labels = decode_sample(raw, entry.url, keep=keep)
                if sample_classes(labels, mask, ignore) & ids:
                    hits.append(pos)
                pos += 1
                bar.advance(1)
                if not choice.shuffle and len(hits) >= choice.count:
                    return hits
    return hits


def choose(index: SplitIndex, choice: Choice) -> list[dict[str, Any]]:
    """The decoded samples to draw, in drawing order."""
    if choice.count < 1:
        raise InputError("show: --n must be >= 1")
    mask = index.spec.mask_ext(choice.mask)
    ids = resolve_classes(index.spec.classes, choice.classes)
    candidates: Sequence[int]
    if ids:
        candidates = _scan(index, ids, choice, mask)
        if not candidates:
            names = index.spec.classes.names() if index.spec.classes else {}
            listed = ", ".join(names.get(i, str(i)) for i in sorted(ids))
            raise InputError(f"no sample of {index.spec.dataset}/{index.spec.split} shows {listed}")
    else:
        candidates = range(index.total)  # indexable without a list of every position
    if choice.shuffle:
        rng = np.random.default_rng(choice.seed)
        picked = rng.choice(len(candidates), size=min(choice.count, len(candidates)), replace=False)
        positions = [candidates[int(i)] for i in picked]
    else:
        positions = list(candidates[: choice.count])
    return _decode_at(index, positions)
