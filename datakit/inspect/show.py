"""Pictures of shards: a grid of samples with their masks overlaid and a legend of the classes shown.

Mask splits get the label map blended over the image (the ignore id in grey, listed in the legend);
image-label splits (ImageNet, I21K: ``cls`` and no mask) get the class name on the tile and a frame
in the class colour; COCO-20K style instance lists are outlined in their class colour.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from ..io import atomic_write_bytes, check_output
from ..shards.index import SplitIndex, find_indexes
from ..shards.spec import SplitSpec
from .palette import IGNORE_COLOR, color_of, colorize
from .select import Choice, choose, ignore_of

LEGEND_MAX = 60
CAPTION_H = 14
FRAME = 3


@dataclass(frozen=True)
class GridOptions:
    count: int = 16
    cols: int = 4
    thumb: int = 256
    alpha: float = 0.5
    mask: str | None = None          # default: the split's first mask member
    shuffle: bool = False
    seed: int = 0
    classes: tuple[str, ...] = ()    # names or ids; samples showing any of them
    progress: bool = True

    def __post_init__(self) -> None:
        if self.count < 1 or self.cols < 1 or self.thumb < 16 or not 0.0 <= self.alpha <= 1.0:
            raise InputError("show: count and cols must be >= 1, thumb >= 16 and alpha within 0..1")

    def choice(self) -> Choice:
        return Choice(self.count, self.shuffle, self.seed, tuple(self.classes), self.mask, self.progress)


@dataclass
class Tile:
    image: Image.Image
    key: str
    classes: set[int] = field(default_factory=set)
    ignore_shown: bool = False
    label: str | None = None          # the class name drawn on an image-label tile


@dataclass
class Grid:
    """The drawn picture and what is on it (the tests and the CLI read these)."""

    image: Image.Image
    keys: list[str]
    legend: list[tuple[int, str]]     # (id, text) per line; the ignore line last
    labels: list[str | None]          # the class name drawn on each tile, if any
    tile_boxes: list[tuple[int, int, int, int]]
    swatches: list[tuple[int, int, int, int] | None]   # the colour box of each legend line
    split: str = ""                   # dataset/split drawn (a dataset root has several)


def _thumb(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    scale = size / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample)


def _outline(m: np.ndarray) -> np.ndarray:
    inner = m.copy()
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return m & ~inner


def instance_outlines(meta: Any, size: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """(category id, edge map) of each instance stored as RLE in the json member (COCO-20K).

    Other json members carry no instance list (COCO-2017 semantic stores ``instances`` as a count)."""
    instances = meta.get("instances") if isinstance(meta, dict) else None
    if not isinstance(instances, list):
        return []
    from pycocotools import mask as mask_utils

    out = []
    for inst in instances:
        rle = inst.get("segmentation") or inst.get("rle") if isinstance(inst, dict) else None
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            continue
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        m = mask_utils.decode(rle).astype(bool)
        if m.shape == (size[1], size[0]):
            out.append((int(inst.get("category_id", 0)), _outline(m)))
    return out


def fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: Any) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _label_banner(img: Image.Image, text: str, font: Any) -> None:
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, CAPTION_H], fill=(0, 0, 0))
    draw.text((3, 1), fit(draw, text, img.width - 6, font), fill=(255, 255, 255), font=font)


def tile(sample: dict[str, Any], spec: SplitSpec, opts: GridOptions, font: Any = None) -> Tile:
    """One thumbnail: the image, its mask blended on top, instance outlines or the class name."""
    img = Image.fromarray(sample["jpg"])
    out = Tile(img, sample["__key__"])
    ext = spec.mask_ext(opts.mask)
    ignore = ignore_of(spec, ext)
    mask = sample.get(ext) if ext else None
    if mask is not None:
        img = Image.blend(img, Image.fromarray(colorize(mask, ignore)), opts.alpha)
        present = {int(i) for i in np.unique(mask)}
        out.ignore_shown = ignore in present
        out.classes = present - {ignore} if ignore is not None else present
    outlines = instance_outlines(sample.get("json"), img.size)
    if outlines:
        arr = np.asarray(img).copy()
        for cid, edges in outlines:
            arr[edges] = color_of(cid)
            out.classes.add(cid)
        img = Image.fromarray(arr)
    img = _thumb(img, opts.thumb, Image.Resampling.BILINEAR)
    if "cls" in sample:
        cid = int(sample["cls"])
        out.classes.add(cid)
        if mask is None:  # an image-label tile: say what the label is on the picture itself
            names = spec.classes.names() if spec.classes else {}
            out.label = names.get(cid, f"class {cid}")
            framed = Image.new("RGB", (img.width + 2 * FRAME, img.height + 2 * FRAME), color_of(cid))
            framed.paste(img, (FRAME, FRAME))
            img = framed
            _label_banner(img, f"{cid} {out.label}", font or ImageFont.load_default())
    out.image = img
    return out


def _legend(tiles: list[Tile], spec: SplitSpec, ignore: int | None) -> list[tuple[int, str]]:
    names = spec.classes.names() if spec.classes else {}
    shown = sorted(set().union(*(t.classes for t in tiles)))
    lines = [(cid, f"{cid} {names.get(cid, '?')}") for cid in shown[:LEGEND_MAX]]
    if len(shown) > LEGEND_MAX:
        lines.append((-1, f"... and {len(shown) - LEGEND_MAX} more"))
    if ignore is not None:
        seen = any(t.ignore_shown for t in tiles)
        lines.append((ignore, f"{ignore} ignore" + ("" if seen else " (none shown)")))
    return lines


def compose(tiles: list[Tile], spec: SplitSpec, opts: GridOptions) -> Grid:
    font = ImageFont.load_default()
    cols = min(opts.cols, len(tiles))
    rows = -(-len(tiles) // cols)
    cell_w = max(t.image.width for t in tiles) + 4
    cell_h = max(t.image.height for t in tiles) + CAPTION_H
    ignore = ignore_of(spec, spec.mask_ext(opts.mask))
    legend = _legend(tiles, spec, ignore)
    legend_w = 240 if legend else 0
    canvas = Image.new("RGB", (cols * cell_w + legend_w, max(rows * cell_h, 16 * len(legend) + 8)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    boxes = []
    for i, t in enumerate(tiles):
        x, y = (i % cols) * cell_w, (i // cols) * cell_h
        canvas.paste(t.image, (x, y))
        boxes.append((x, y, x + t.image.width, y + t.image.height))
        draw.text((x, y + t.image.height + 1), fit(draw, t.key, cell_w - 4, font), fill=(0, 0, 0), font=font)
    x0 = cols * cell_w + 6
    swatches: list[tuple[int, int, int, int] | None] = []
    for j, (cid, text) in enumerate(legend):
        y = 4 + 16 * j
        swatches.append(None)
        if cid >= 0:
            colour = IGNORE_COLOR if cid == ignore else color_of(cid)
            draw.rectangle([x0, y, x0 + 12, y + 12], fill=colour, outline=(0, 0, 0))
            swatches[-1] = (x0, y, x0 + 12, y + 12)
        draw.text((x0 + 18, y), fit(draw, text, legend_w - 26, font), fill=(0, 0, 0), font=font)
    return Grid(canvas, [t.key for t in tiles], legend, [t.label for t in tiles], boxes, swatches)


def render(index: SplitIndex, opts: GridOptions = GridOptions()) -> Grid:
    """Choose the samples (first, shuffled or by class), draw them, and describe the picture."""
    if not index.spec.image:
        raise InputError(f"{index.spec.dataset}/{index.spec.split} has no images to show")
    samples = choose(index, opts.choice())
    if not samples:
        raise InputError(f"{index.spec.dataset}/{index.spec.split} has no samples to show")
    font = ImageFont.load_default()
    return compose([tile(s, index.spec, opts, font) for s in samples], index.spec, opts)


def render_grid(index: SplitIndex, opts: GridOptions = GridOptions()) -> Image.Image:
    return render(index, opts).image


def pick_split(path: str, split: str | None) -> SplitIndex:
    """The split at ``path`` (the first one, or the one named ``split``, under a dataset root)."""
    indexes = find_indexes(path)
    if split is not None:
        indexes = [ix for ix in indexes if ix.spec.split == split]
        if not indexes:
            raise InputError(f"no split {split!r} under {path}")
    return indexes[0]


def draw(path: str, out: str | Path, opts: GridOptions = GridOptions(), split: str | None = None) -> Grid:
    """Draw a split as a PNG grid at ``out`` (written atomically); returns what was drawn."""
    index = pick_split(path, split)
    check_output(out, [index.base], file=True)
    grid = render(index, opts)
    grid.split = f"{index.spec.dataset}/{index.spec.split}"
    buf = io.BytesIO()
    grid.image.save(buf, format="PNG")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    return grid


def show(path: str, out: str | Path, opts: GridOptions = GridOptions(), split: str | None = None) -> Path:
    """Draw a split as a PNG grid; returns the written path."""
    draw(path, out, opts, split)
    return Path(out)
