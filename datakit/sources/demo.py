"""The embedded demo dataset: generated shape images plus a few real ADE20K and VOC samples.

``synthetic`` images are drawn from the record's seed (no files), so the demo runs anywhere;
``ade150`` and ``voc`` use the real images and masks shipped in ``manifests/demo/``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..catalog import manifests_dir, read_lines
from ..errors import InputError, SampleError
from ..shards.spec import ClassTable, MaskMember, SplitSpec
from .base import Listing, Record, Sample
from .common import input_file, read_input

SHAPES = ["background", "circle", "square", "triangle"]


def draw_shapes(seed: int, width: int = 320, height: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image with a few filled shapes and its exact label map (0 = background)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    img = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    canvas = Image.fromarray(img)
    label = Image.new("L", (width, height), 0)
    draw, ldraw = ImageDraw.Draw(canvas), ImageDraw.Draw(label)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, 4))
        cx, cy = int(rng.integers(40, width - 40)), int(rng.integers(40, height - 40))
        r = int(rng.integers(15, 40))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = [cx - r, cy - r, cx + r, cy + r]
        if cls == 1:
            draw.ellipse(box, fill=colour)
            ldraw.ellipse(box, fill=cls)
        elif cls == 2:
            draw.rectangle(box, fill=colour)
            ldraw.rectangle(box, fill=cls)
        else:
            tri = [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
            draw.polygon(tri, fill=colour)
            ldraw.polygon(tri, fill=cls)
    return np.asarray(canvas), np.asarray(label)


@dataclass(frozen=True, slots=True)
class Shapes:
    """A generated image: drawn from its seed, no file."""

    seed: int


@dataclass(frozen=True, slots=True)
class Shipped:
    """A real sample shipped in ``manifests/demo/``: image, palette mask, and which dataset it is from."""

    path: str
    mask: str
    split: str


@dataclass(frozen=True)
class DemoSource:
    synthetic: int = 200
    name: str = "demo"

    def roots(self) -> tuple[str, ...]:
        return (str(manifests_dir() / "demo"),)

    def splits(self) -> Sequence[str]:
        return ["synthetic", "ade150", "voc"]

    def spec(self, split: str) -> SplitSpec:
        if split == "synthetic":
            table = ClassTable.from_names(SHAPES, ignore_index=255)
            notes = {"labels": "0 background, 1 circle, 2 square, 3 triangle"}
        elif split == "ade150":
            table = ClassTable.from_names(read_lines("classes/ade150_names_larvseg.txt"), ignore_index=255)
            notes = {"labels": "ADE20K-150 reduced: stored = raw - 1, raw 0 (other) -> 255"}
        elif split == "voc":
            table = ClassTable.from_names(read_lines("classes/voc21_names.txt"), ignore_index=255)
            notes = {"labels": "PASCAL VOC: 0 background, 1..20, 255 void"}
        else:
            raise InputError(f"demo has no split {split!r}")
        return SplitSpec("demo", split, classes=table, masks=(MaskMember(bits=8, fill=255),), notes=notes)

    def records(self, split: str) -> Listing:
        if split == "synthetic":
            return Listing([Record(f"shapes_{i:05d}", Shapes(i), 20_000) for i in range(self.synthetic)])
        folder = manifests_dir() / "demo" / ("ade" if split == "ade150" else "voc")
        out: list[Record[Any]] = []
        for p in sorted(folder.glob("*.jpg")):
            img, mask = input_file(p), input_file(p.with_suffix(".png"))
            out.append(Record(p.stem, Shipped(img.path, mask.path, split), img.size, (img, mask)))
        return Listing(out)

    def load(self, record: Record[Any]) -> Sample:
        item = record.payload
        if isinstance(item, Shapes):
            img, label = draw_shapes(item.seed)
            return Sample(record.key, img, {"seg.png": label}, meta={"seed": item.seed}, origin=record.key)
        assert isinstance(item, Shipped)
        try:
            mask = np.asarray(Image.open(io.BytesIO(read_input(item.mask, "missing_mask"))))  # palette PNGs: indices
        except OSError as err:
            raise SampleError("unreadable_mask", f"{item.mask}: {err}") from None
        if item.split == "ade150":
            mask = np.where(mask == 0, 255, mask.astype(np.int32) - 1).astype(np.uint8)
        meta = {"path": item.path.split("/manifests/")[-1]}
        return Sample(record.key, read_input(item.path), {"seg.png": mask}, meta=meta, origin=item.path)


def make_source(params: dict[str, Any]) -> DemoSource:
    unknown = set(params) - {"synthetic", "splits"}  # splits are applied by the build
    if unknown:
        raise InputError(f"demo recipe: unknown parameter(s) {sorted(unknown)}")
    value = params.get("synthetic", 200)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"demo recipe: synthetic must be a positive integer, got {value!r}")
    return DemoSource(value)
