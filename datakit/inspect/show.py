"""Pictures of shards: a grid of samples with their masks overlaid and a legend of the classes shown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from .palette import color_of, colorize
from ..shards.index import SplitIndex, find_indexes
from ..shards.reader import iter_split
from ..io import atomic_write_bytes


@dataclass(frozen=True)
class GridOptions:
    count: int = 16
    cols: int = 4
    thumb: int = 256
    alpha: float = 0.5
    mask: str = "seg.png"

    def __post_init__(self) -> None:
        if self.count < 1 or self.cols < 1 or self.thumb < 16 or not 0.0 <= self.alpha <= 1.0:
            raise InputError("show: count and cols must be >= 1, thumb >= 16 and alpha within 0..1")


def _thumb(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    scale = size / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample)


def _instance_outlines(meta: dict[str, Any], size: tuple[int, int]) -> np.ndarray | None:
    """A boolean edge map of instance masks stored as RLE in the json member (COCO-20K)."""
    instances = meta.get("instances") if isinstance(meta, dict) else None
    if not instances:
        return None
    from pycocotools import mask as mask_utils

    edges = np.zeros((size[1], size[0]), dtype=bool)
    for inst in instances:
        rle = inst.get("segmentation") or inst.get("rle")
        if not isinstance(rle, dict):
            continue
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        m = mask_utils.decode(rle).astype(bool)
        inner = m.copy()
        inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        edges |= m & ~inner
    return edges


def tile(sample: dict[str, Any], index: SplitIndex, opts: GridOptions) -> tuple[Image.Image, set[int]]:
    """One thumbnail: the image, its mask blended on top, instance outlines; plus the ids it shows."""
    img = Image.fromarray(sample["jpg"])
    shown: set[int] = set()
    table = index.spec.classes
    ignore = table.ignore_index if table else None
    mask = sample.get(opts.mask)
    if mask is not None:
        colour = Image.fromarray(colorize(mask, ignore))
        img = Image.blend(img, colour, opts.alpha)
        shown = {int(i) for i in np.unique(mask)} - ({ignore} if ignore is not None else set())
    edges = _instance_outlines(sample.get("json", {}), img.size)
    if edges is not None:
        arr = np.asarray(img).copy()
        arr[edges] = (255, 255, 0)
        img = Image.fromarray(arr)
    if "cls" in sample:
        shown.add(int(sample["cls"]))
    return _thumb(img, opts.thumb, Image.Resampling.BILINEAR), shown


def render_grid(index: SplitIndex, opts: GridOptions = GridOptions()) -> Image.Image:
    samples = list(iter_split(index, decode=True, limit=opts.count))
    if not samples:
        raise InputError(f"{index.spec.dataset}/{index.spec.split} has no samples to show")
    if "jpg" not in samples[0]:
        raise InputError("this split has no images to show")
    tiles, shown = [], set()
    for s in samples:
        t, ids = tile(s, index, opts)
        tiles.append((t, s["__key__"]))
        shown |= ids
    names = index.spec.classes.names() if index.spec.classes else {}
    font = ImageFont.load_default()
    cols = min(opts.cols, len(tiles))
    rows = -(-len(tiles) // cols)
    cell = max(t.height for t, _ in tiles) + 14
    legend = sorted(shown)[:60]
    legend_w = 220 if legend else 0
    canvas = Image.new("RGB", (cols * (opts.thumb + 4) + legend_w, max(rows * cell, 16 * len(legend) + 8)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (t, key) in enumerate(tiles):
        x, y = (i % cols) * (opts.thumb + 4), (i // cols) * cell
        canvas.paste(t, (x, y))
        draw.text((x, y + t.height + 1), key[:40], fill=(0, 0, 0), font=font)
    x0 = cols * (opts.thumb + 4) + 6
    for j, cid in enumerate(legend):
        y = 4 + 16 * j
        draw.rectangle([x0, y, x0 + 12, y + 12], fill=color_of(cid), outline=(0, 0, 0))
        draw.text((x0 + 18, y), f"{cid} {names.get(cid, '?')}"[:32], fill=(0, 0, 0), font=font)
    return canvas


def show(path: str, out: str | Path, opts: GridOptions = GridOptions(), split: str | None = None) -> Path:
    """Draw the first samples of a split as a PNG grid; returns the written path."""
    indexes = find_indexes(path)
    if split is not None:
        indexes = [ix for ix in indexes if ix.spec.split == split]
        if not indexes:
            raise InputError(f"no split {split!r} under {path}")
    import io

    buf = io.BytesIO()
    render_grid(indexes[0], opts).save(buf, format="PNG")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return out
