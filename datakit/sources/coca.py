"""CoCA co-salient object detection: ``image/<Category>/*.jpg`` with ``binary/<Category>/*.png``.

Images and masks are paired by (category, stem), never by sorted globs. A mask is binarised
with ``value > 127`` (after a greyscale view for colour files) and the foreground takes the
category's label: its position in ZUTIS's 80-name list plus one (0 = background, 255 unused).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import catalog
from ..errors import InputError, SampleError
from ..shards.spec import ClassTable, MaskMember, SplitSpec
from .base import Listing, Record, Sample
from .common import (check_size, image_dims, list_stems, problem, read_input, read_grey_map, totals_notes,
                     totals_report)
from .params import parse_params

SPLIT = "test"
EXPECTED = {SPLIT: 1_295}
THRESHOLD = 127


@dataclass(frozen=True)
class CocaParams:
    src: str = ""
    classes: str = "classes/coca80_names_zutis.txt"
    splits: tuple[str, ...] = ()

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"splits": (SPLIT,)}
    REQUIRED: ClassVar[dict[str, str]] = {"src": "no dataset root given (pass --src DIR or -p src=DIR)"}


@dataclass(frozen=True, slots=True)
class CocaPair:
    """A CoCA image, its binary mask, its category folder and the label that category maps to."""

    path: str
    mask: str
    category: str
    label: int


@lru_cache(maxsize=None)
def coca_names(spec: str) -> tuple[str, ...]:
    """The category list (packaged manifest or a file path); label = position + 1."""
    path = Path(spec)
    if path.is_file():
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        names = catalog.read_lines(spec)
    if len(set(names)) != len(names):
        raise InputError(f"CoCA class list {spec} has duplicate names")
    return tuple(names)


@dataclass(frozen=True)
class CocaSource:
    params: CocaParams
    name: str = "coca"

    def __post_init__(self) -> None:
        coca_names(self.params.classes)
        self.root()

    def root(self) -> Path:
        src = Path(self.params.src)
        for cand in (src, src / "CoCA", src / "coca"):
            if (cand / "image").is_dir():
                return cand
        raise InputError(f"CoCA layout not found: no image/ folder in {src} (or its CoCA/ sub-folder)")

    def roots(self) -> tuple[str, ...]:
        return (self.params.src,)

    def splits(self) -> list[str]:
        return [SPLIT]

    def spec(self, split: str) -> SplitSpec:
        names = coca_names(self.params.classes)
        table = ClassTable.from_names(["background", *names], ignore_index=255)
        notes = {
            "labels": "0 background, k = 1 + position of the category folder in the class list (ZUTIS order)",
            "binarisation": f"mask value > {THRESHOLD} is foreground (greyscale view for colour PNGs)",
            "pairing": "image/<Category>/<stem>.jpg with binary/<Category>/<stem>.png",
        }
        return SplitSpec(self.name, split, table, masks=(MaskMember("seg.png", 8, 255),), notes=notes)

    def records(self, split: str) -> Listing:
        root = self.root()
        img_root, bin_root = root / "image", root / "binary"
        if not img_root.is_dir() or not bin_root.is_dir():
            raise InputError(f"{root}: CoCA needs both image/ and binary/ folders")
        labels = {n: i + 1 for i, n in enumerate(coca_names(self.params.classes))}
        cats = sorted({d.name for d in img_root.iterdir() if d.is_dir()} | {d.name for d in bin_root.iterdir() if d.is_dir()})
        out: list[Record[Any]] = []
        pairs = 0
        for cat in cats:
            images, masks = list_stems(img_root / cat, ".jpg"), list_stems(bin_root / cat, ".png")
            for stem in sorted(set(images) | set(masks)):
                key = f"{cat}/{stem}"
                if stem not in masks:
                    out.append(problem(key, images[stem].path, "missing_mask",
                                       f"{images[stem].path}: no binary/{cat}/{stem}.png"))
                elif stem not in images:
                    out.append(problem(key, masks[stem].path, "missing_image", f"{masks[stem].path}: no image/{cat}/{stem}.jpg"))
                elif cat not in labels:
                    out.append(problem(key, images[stem].path, "unknown_label", f"category {cat!r} is not in the class list"))
                else:
                    pairs += 1
                    img, msk = images[stem], masks[stem]
                    out.append(Record(key, CocaPair(img.path, msk.path, cat, labels[cat]), img.size, (img, msk)))
        return Listing(out, totals_notes(EXPECTED.get(split), pairs))

    def load(self, record: Record[CocaPair]) -> Sample:
        d = record.payload
        assert isinstance(d, CocaPair)
        data = read_input(d.path)
        grey = read_grey_map(Path(d.mask))
        check_size(grey, image_dims(data, d.path), d.mask)
        if grey.ndim != 2:
            raise SampleError("bad_mask", f"{d.mask}: not a 2-D mask")
        mask = np.where(grey > THRESHOLD, d.label, 0).astype(np.uint8)
        meta = {"category": d.category, "file_name": Path(d.path).name}
        return Sample(record.key, data, {"seg.png": mask}, cls=None, meta=meta, origin=d.path)


def make_source(params: dict[str, Any]) -> CocaSource:
    return CocaSource(parse_params(CocaParams, params, "coca"))


def report(build_report: Any, params: dict[str, Any]) -> str:
    return totals_report(build_report, EXPECTED, "CoCA")
