"""Helpers for the stream tests: small real shards of generated images whose masks follow the pixels.

Every image is a grid of flat colour cells; the mask holds the class of each cell and the class
is recoverable from the colour, so a transform that moves image and mask differently is caught.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from datakit.shards.index import make_index, write_index
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
from datakit.shards.writer import ShardWriter

# class id -> colour: the corners of the RGB cube, far apart so JPEG noise never changes the nearest
PALETTE = np.array([[255 * (c >> 2 & 1), 255 * (c >> 1 & 1), 255 * (c & 1)] for c in range(8)], dtype=np.uint8)
IGNORE = 255


def cell_sample(uid: int, h: int = 24, w: int = 32, cell: int = 8, classes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask) for sample ``uid``: cells of random classes, image = palette[mask]."""
    rng = np.random.default_rng(uid)
    grid = rng.integers(0, classes, size=(-(-h // cell), -(-w // cell)))
    mask = np.kron(grid, np.ones((cell, cell), dtype=np.int64))[:h, :w].astype(np.uint8)
    return PALETTE[mask], mask


def classes_from_image(image: np.ndarray) -> np.ndarray:
    """The class whose palette colour is nearest to each pixel."""
    dist = ((image[:, :, None, :].astype(np.int32) - PALETTE[None, None].astype(np.int32)) ** 2).sum(-1)
    return dist.argmin(-1)


def write_split(root: Path, sizes: Sequence[int], name: str = "toy", split: str = "train", h: int = 24,
                w: int = 32, bits: int = 8, with_cls: bool = True, uid0: int = 0, cls_of=lambda uid: uid % 40) -> Path:
    """Shards with the given sample counts under ``root/split``; returns the split folder.
    ``cls_of(uid)`` is each sample's image label (default ``uid % 40``: not class-sorted)."""
    directory = Path(root) / split
    directory.mkdir(parents=True, exist_ok=True)
    ignore = IGNORE if bits == 8 else 65535
    spec = SplitSpec(name, split, classes=ClassTable.from_names([f"c{i}" for i in range(40)], ignore),
                     masks=(MaskMember("seg.png", bits, ignore),), cls=with_cls, meta=False)
    stats, uid = [], uid0
    for s, n in enumerate(sizes):
        writer = ShardWriter(directory, f"{split}-{s:06d}", spec, strict=True)
        for _ in range(n):
            image, mask = cell_sample(uid, h, w)
            if bits == 16:
                mask = mask.astype(np.uint16) * 1000
            writer.write(f"s{uid:05d}", image, {"seg.png": mask}, cls=cls_of(uid) if with_cls else None)
            uid += 1
        stats.append(writer.close())
    write_index(directory, make_index(spec, stats, {"shard_size": max(sizes, default=0)}))
    return directory


def write_image_only(root: Path, sizes: Sequence[int], name: str = "imgs", uid0: int = 10_000) -> Path:
    """A split with image-level labels only (no masks), like ImageNet-21K."""
    directory = Path(root) / "train"
    directory.mkdir(parents=True, exist_ok=True)
    spec = SplitSpec(name, "train", classes=ClassTable.from_names([f"c{i}" for i in range(40)], IGNORE),
                     cls=True, meta=False)
    stats, uid = [], uid0
    for s, n in enumerate(sizes):
        writer = ShardWriter(directory, f"train-{s:06d}", spec, strict=True)
        for _ in range(n):
            image, _ = cell_sample(uid)
            writer.write(f"i{uid:05d}", image, {}, cls=uid % 40)
            uid += 1
        stats.append(writer.close())
    write_index(directory, make_index(spec, stats, {"shard_size": max(sizes)}))
    return directory


def keys_of(batches) -> list[str]:
    return [k for b in batches for k in b["__key__"]]


def simulate(make_stream, ranks: int, workers: int) -> dict[int, list[list[str]]]:
    """Per rank, the batches (as key lists) in the order a DataLoader with ``workers`` workers hands them out."""
    out: dict[int, list[list[str]]] = {}
    for r in range(ranks):
        stream = make_stream(r, ranks)
        per_worker = [list(stream.iter_worker(w, workers)) for w in range(workers)]
        merged, i = [], 0
        while any(per_worker):
            w = i % workers
            if per_worker[w]:
                merged.append(list(per_worker[w].pop(0)["__key__"]))
            i += 1
        out[r] = merged
    return out


def global_sequence(per_rank: dict[int, list[list[str]]]) -> list[str]:
    """Keys in global consumption order: step by step, rank by rank."""
    steps = len(per_rank[0])
    return [k for s in range(steps) for r in sorted(per_rank) for k in per_rank[r][s]]
