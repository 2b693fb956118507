"""Dataset statistics read from the shards themselves: counts, bytes, image sizes, class pixels.

Shards are read in parallel (one task per shard) through the public reading API; only the JPEG
header (for the size) and the label members are decoded. Progress shows on a terminal and as
status lines in batch logs. ``to_json`` is the machine-readable form (``stats --json``): fields are
only ever added, never renamed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Iterable

import numpy as np

from ..progress import ProgressBar
from ..shards.codecs import image_size
from ..shards.index import ShardEntry, SplitIndex, find_indexes
from ..shards.members import decode_sample
from ..shards.reader import iter_split
from ..jobs import run_local, values


def counter_summary(counts: Counter) -> dict[str, int]:
    """min / median / max of a value -> count table, without expanding it into one entry per count.

    The median is the element at position ``total // 2`` of the sorted expansion (the upper median)."""
    items = sorted((v, n) for v, n in counts.items() if n > 0)
    if not items:
        return {}
    target = sum(n for _, n in items) // 2
    seen = 0
    median = items[-1][0]
    for value, n in items:
        seen += n
        if seen > target:
            median = value
            break
    return {"min": items[0][0], "median": median, "max": items[-1][0]}


@dataclass
class SplitStats:
    name: str
    samples: int = 0
    shards: int = 0
    bytes: int = 0
    image_sizes: Counter = field(default_factory=Counter)
    class_pixels: Counter = field(default_factory=Counter)
    class_images: Counter = field(default_factory=Counter)
    failures: dict[str, int] = field(default_factory=dict)
    class_ids: tuple[int, ...] = ()      # every id of the class table (absent classes are the ones never seen)
    ignore_id: int | None = None

    def absent(self) -> list[int]:
        return [i for i in self.class_ids if i != self.ignore_id and not self.class_images.get(i)]

    def to_json(self, names: dict[int, str]) -> dict[str, Any]:
        widths: Counter = Counter()
        heights: Counter = Counter()
        for (w, h), n in self.image_sizes.items():
            widths[w] += n
            heights[h] += n
        total_px = sum(self.class_pixels.values()) or 1

        def name(i: int) -> str:
            return names.get(i, "(ignore)" if i == self.ignore_id else "?")

        return {
            "split": self.name,
            "samples": self.samples,
            "shards": self.shards,
            "bytes": self.bytes,
            "failures": self.failures,
            "image_width": counter_summary(widths),
            "image_height": counter_summary(heights),
            "common_sizes": [{"size": f"{w}x{h}", "count": n} for (w, h), n in self.image_sizes.most_common(5)],
            "class_pixels": [
                {"id": i, "name": name(i), "pixels": n, "fraction": round(n / total_px, 6)}
                for i, n in sorted(self.class_pixels.items())
            ],
            "class_images": [{"id": i, "name": name(i), "images": n} for i, n in sorted(self.class_images.items())],
            "ignore_id": self.ignore_id,
            "class_count": len([i for i in self.class_ids if i != self.ignore_id]),
            "absent_classes": [{"id": i, "name": name(i)} for i in self.absent()],
        }


def _shard_stats(index: SplitIndex, mask_ext: str | None, entry: ShardEntry,
                 progress: Callable[[int], None]) -> tuple[Counter, Counter, Counter]:
    sizes: Counter = Counter()
    pixels: Counter = Counter()
    images: Counter = Counter()
    keep = frozenset(m for m in (mask_ext, "cls") if m)
    for raw in iter_split(replace(index, shards=(entry,)), decode=False):
        if "jpg" in raw:
            sizes[image_size(raw["jpg"])] += 1
        labels = decode_sample(raw, entry.url, keep=keep)
        if mask_ext and mask_ext in labels:
            counts = np.bincount(np.asarray(labels[mask_ext]).ravel())
            for cid in np.flatnonzero(counts):
                pixels[int(cid)] += int(counts[cid])
                images[int(cid)] += 1
        elif "cls" in labels:
            images[int(labels["cls"])] += 1
        progress(1)
    return sizes, pixels, images


def split_stats(index: SplitIndex, workers: int = 1, progress: Callable[[int], None] | None = None) -> SplitStats:
    mask_ext = index.spec.masks[0].ext if index.spec.masks else None
    table = index.spec.classes
    out = SplitStats(f"{index.spec.dataset}/{index.spec.split}", index.total, len(index.shards), index.total_bytes,
                     class_ids=tuple(e.id for e in table.entries) if table else (),
                     ignore_id=index.spec.ignore_id if index.spec.masks else (table.ignore_index if table else None))
    out.failures = dict(index.failures)
    fn = partial(_shard_stats, index, mask_ext)
    for sizes, pixels, images in values(run_local(fn, list(index.shards), workers, progress or (lambda n: None))):
        out.image_sizes.update(sizes)
        out.class_pixels.update(pixels)
        out.class_images.update(images)
    return out


def stats(path: str, workers: int = 1, progress: bool = True) -> list[tuple[SplitIndex, SplitStats]]:
    """Statistics of every split found at ``path``, with a progress bar (or status lines) per split."""
    out = []
    for ix in find_indexes(path):
        with ProgressBar(ix.total, f"stats {ix.spec.dataset}/{ix.spec.split}", enabled=progress) as bar:
            out.append((ix, split_stats(ix, workers, bar.advance)))
    return out


def names_of(index: SplitIndex) -> dict[int, str]:
    return index.spec.classes.names() if index.spec.classes else {}


def stats_json(results: Iterable[tuple[SplitIndex, SplitStats]]) -> list[dict[str, Any]]:
    return [st.to_json(names_of(ix)) for ix, st in results]
