"""Dataset statistics read from the shards themselves: counts, bytes, image sizes, class pixels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..errors import CorruptShardError
from ..jobs import run_local
from ..shards.codecs import decode_mask, image_size
from ..shards.index import ShardEntry, SplitIndex, find_indexes
from ..shards.reader import open_shard
from ..shards.tario import iter_samples


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

    def to_json(self, names: dict[int, str]) -> dict[str, Any]:
        widths = sorted(w for (w, h), n in self.image_sizes.items() for _ in range(n))
        heights = sorted(h for (w, h), n in self.image_sizes.items() for _ in range(n))
        total_px = sum(self.class_pixels.values()) or 1

        def q(v: list[int]) -> dict[str, int]:
            return {"min": v[0], "median": v[len(v) // 2], "max": v[-1]} if v else {}

        return {
            "split": self.name,
            "samples": self.samples,
            "shards": self.shards,
            "bytes": self.bytes,
            "failures": self.failures,
            "image_width": q(widths),
            "image_height": q(heights),
            "common_sizes": [{"size": f"{w}x{h}", "count": n} for (w, h), n in self.image_sizes.most_common(5)],
            "class_pixels": [
                {"id": i, "name": names.get(i, "?"), "pixels": n, "fraction": round(n / total_px, 6)}
                for i, n in sorted(self.class_pixels.items())
            ],
            "class_images": [{"id": i, "name": names.get(i, "?"), "images": n} for i, n in sorted(self.class_images.items())],
        }


def _shard_stats(index: SplitIndex, mask_ext: str | None, entry: ShardEntry, progress: Any) -> tuple[Counter, Counter, Counter]:
    sizes, pixels, images = Counter(), Counter(), Counter()
    with open_shard(index, entry) as f:
        for raw in iter_samples(f, entry.url):
            if "jpg" in raw:
                sizes[image_size(raw["jpg"])] += 1
            if mask_ext and mask_ext in raw:
                counts = np.bincount(decode_mask(raw[mask_ext]).ravel())
                for cid in np.flatnonzero(counts):
                    pixels[int(cid)] += int(counts[cid])
                    images[int(cid)] += 1
            elif "cls" in raw:
                images[int(raw["cls"])] += 1
            progress(1)
    return sizes, pixels, images


def split_stats(index: SplitIndex, workers: int = 1, progress: Any = None) -> SplitStats:
    mask_ext = index.spec.masks[0].ext if index.spec.masks else None
    out = SplitStats(f"{index.spec.dataset}/{index.spec.split}", index.total, len(index.shards), index.total_bytes)
    out.failures = dict(index.failures)
    fn = partial(_shard_stats, index, mask_ext)
    for res in run_local(fn, list(index.shards), workers, progress or (lambda n: None)):
        if res.error:
            raise CorruptShardError(res.error)
        sizes, pixels, images = res.value
        out.image_sizes.update(sizes)
        out.class_pixels.update(pixels)
        out.class_images.update(images)
    return out


def stats(path: str, workers: int = 1) -> list[tuple[SplitIndex, SplitStats]]:
    """Statistics of every split found at ``path``."""
    return [(ix, split_stats(ix, workers)) for ix in find_indexes(path)]
