"""PASCAL VOC 2012 segmentation (+ SBD ``SegmentationClassAug``) with optional saliency masks.

Accepts the VOCdevkit layout (``JPEGImages``, ``ImageSets/Segmentation``) and MaskContrast's
``VOCSegmentation`` (``images``, ``sets``). ``train``/``val`` read ``SegmentationClass``,
``trainaug`` reads ``SegmentationClassAug``; labels 0..20 with 255 void, palette PNGs read as
indices. With ``saliency=<folder>`` each sample also gets ``sal.png`` (0/255, as MaskContrast
stores it); ids without a saliency PNG are left out (MaskContrast's rule) and counted in the
index notes, or fail with ``missing_saliency`` when ``missing_saliency=fail``. A relative
``saliency`` folder is taken from the current directory when it exists there (``-p saliency=./sal``),
else from the VOC root (MaskContrast's ``saliency_supervised_model`` beside ``images/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import catalog
from ..errors import InputError, SampleError
from ..shards.spec import ClassTable, MaskMember, SplitSpec
from .base import Listing, Record, Sample
from .common import (apply_lut, check_size, first_dir, image_dims, input_file, outside_root, problem, read_input,
                     read_index_map, totals_notes, totals_report, under_root)
from .params import parse_params

EXPECTED = {"train": 1_464, "val": 1_449, "trainaug": 10_582}
LIST_NAMES = {"train": ("train.txt",), "val": ("val.txt",), "trainaug": ("trainaug.txt", "aug.txt", "train_aug.txt")}
MASK_DIRS = {"train": "SegmentationClass", "val": "SegmentationClass", "trainaug": "SegmentationClassAug"}
LISTED_MISSING = 50


@dataclass(frozen=True)
class VocParams:
    src: str = ""
    splits: tuple[str, ...] = ()
    saliency: str = ""
    missing_saliency: str = "skip"

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "splits": ("train", "val", "trainaug"), "missing_saliency": ("skip", "fail"),
    }
    REQUIRED: ClassVar[dict[str, str]] = {"src": "no dataset root given (pass --src DIR or -p src=DIR)"}


@dataclass(frozen=True, slots=True)
class VocSample:
    """A VOC image, its class mask and (with saliency) its saliency mask."""

    path: str
    mask: str
    sal: str = ""


@lru_cache(maxsize=1)
def voc_table() -> ClassTable:
    return ClassTable.from_names(catalog.read_lines("classes/voc21_names.txt"), ignore_index=255)


@lru_cache(maxsize=1)
def voc_lut() -> np.ndarray:
    lut = np.full(256, -1, np.int32)
    lut[:21] = np.arange(21)
    lut[255] = 255
    return lut


@lru_cache(maxsize=1)
def saliency_lut() -> np.ndarray:
    lut = np.full(256, -1, np.int32)
    lut[0], lut[255] = 0, 255
    return lut


def voc_root(src: Path) -> Path:
    """``src`` itself, or its ``VOCdevkit/VOC2012`` / ``VOCSegmentation`` sub-folder."""
    for cand in (src, src / "VOCdevkit" / "VOC2012", src / "VOC2012", src / "VOCSegmentation"):
        if (cand / "JPEGImages").is_dir() or (cand / "images").is_dir():
            return cand
    raise InputError(f"no PASCAL VOC layout under {src} (expected JPEGImages/ or images/)")


def list_file(root: Path, split: str) -> Path | None:
    for folder in ("ImageSets/Segmentation", "sets"):
        for name in LIST_NAMES[split]:
            if (root / folder / name).is_file():
                return root / folder / name
    return None


def read_ids(path: Path) -> list[str]:
    ids = [ln.split()[0] for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: duplicate ids")
    return ids


def saliency_dir(root: Path, value: str) -> Path:
    """An absolute or current-directory path as given; otherwise the folder of that name under the VOC root."""
    given = Path(value).expanduser()
    return given.resolve() if given.is_absolute() or given.is_dir() else root / value


@dataclass(frozen=True)
class VocSource:
    params: VocParams
    name: str = "voc2012"

    def __post_init__(self) -> None:
        root = self.root
        if self.params.saliency and not Path(self.params.saliency).is_dir():
            raise InputError(f"saliency folder not found: {self.params.saliency} (nor under {root})")
        if self.params.splits:
            missing = [s for s in self.params.splits if list_file(root, s) is None]
            if missing:
                raise InputError(f"{root}: no id list for split(s) {missing} (ImageSets/Segmentation or sets/)")

    @property
    def root(self) -> Path:
        return voc_root(Path(self.params.src))

    def roots(self) -> tuple[str, ...]:
        return (self.params.src, self.params.saliency) if self.params.saliency else (self.params.src,)

    def splits(self) -> list[str]:
        if self.params.splits:
            return list(self.params.splits)
        found = [s for s in ("train", "val", "trainaug") if list_file(self.root, s) is not None]
        if not found:
            raise InputError(f"{self.root}: no id lists (train.txt, val.txt, trainaug.txt) found")
        return found

    def spec(self, split: str) -> SplitSpec:
        masks = [MaskMember("seg.png", 8, 255)]
        notes: dict[str, Any] = {
            "labels": "0 background, 1..20 VOC classes, 255 void/boundary (palette indices as stored)",
            "masks_from": MASK_DIRS[split],
        }
        if self.params.saliency:
            masks.append(MaskMember("sal.png", 8, 0, role="saliency"))
            notes["saliency"] = (f"sal.png from {Path(self.params.saliency).name}/: 0 background, 255 salient "
                                 "(as MaskContrast stores it)")
        return SplitSpec(self.name, split, voc_table(), masks=tuple(masks), notes=notes)

    def records(self, split: str) -> Listing:
        root = self.root
        listing = list_file(root, split)
        if listing is None:
            raise InputError(f"{root}: no id list for {split}")
        img_dir = first_dir(root, ["JPEGImages", "images"], "VOC images")
        mask_dir = root / MASK_DIRS[split]
        sal_dir = Path(self.params.saliency) if self.params.saliency else None
        out: list[Record[Any]] = []
        skipped: list[str] = []
        ids = read_ids(listing)
        for sid in ids:
            rec = self._record(sid, img_dir, mask_dir, sal_dir)
            if rec is None:
                skipped.append(sid)
            else:
                out.append(rec)
        facts = totals_notes(EXPECTED.get(split), len(ids))
        if sal_dir is not None and self.params.missing_saliency == "skip":
            facts["saliency_missing"] = {"count": len(skipped), "ids": skipped[:LISTED_MISSING],
                                         "rule": "ids without a saliency PNG are left out, as MaskContrast does"}
        return Listing(out, facts)

    def _record(self, sid: str, img_dir: Path, mask_dir: Path, sal_dir: Path | None) -> Record[Any] | None:
        """The record of one listed id; None when its saliency is missing and such ids are skipped."""
        image, mask = under_root(img_dir, f"{sid}.jpg"), under_root(mask_dir, f"{sid}.png")
        if image is None or mask is None:
            return outside_root(sid, img_dir.parent, f"{sid}.jpg")
        files = [input_file(image), input_file(mask)]
        sal = ""
        if sal_dir is not None:
            found = under_root(sal_dir, f"{sid}.png")
            if found is None:
                return outside_root(sid, sal_dir, f"{sid}.png")
            if not os.path.isfile(found):
                if self.params.missing_saliency == "skip":
                    return None
                return problem(sid, found, "missing_saliency", f"{found}: no saliency mask")
            sal = found
            files.append(input_file(found))
        return Record(sid, VocSample(image, mask, sal), max(files[0].size, 0), tuple(files))

    def load(self, record: Record[VocSample]) -> Sample:
        d = record.payload
        assert isinstance(d, VocSample)
        data = read_input(d.path)
        size = image_dims(data, d.path)
        raw = read_index_map(Path(d.mask))
        check_size(raw, size, d.mask)
        masks = {"seg.png": apply_lut(raw, voc_lut(), d.mask).astype(np.uint8)}
        if d.sal:
            sal = read_index_map(Path(d.sal))
            check_size(sal, size, d.sal)
            try:
                masks["sal.png"] = apply_lut(sal, saliency_lut(), d.sal).astype(np.uint8)
            except SampleError as err:
                raise SampleError("bad_saliency", f"{err.detail} (saliency must hold 0/255)") from None
        return Sample(record.key, data, masks, meta={"id": record.key}, origin=d.path)


def make_source(params: dict[str, Any]) -> VocSource:
    p = parse_params(VocParams, params, "voc")
    if p.saliency:
        root = voc_root(Path(p.src))
        found = saliency_dir(root, p.saliency)
        if not found.is_dir():
            raise InputError(f"saliency folder not found: {p.saliency} (looked in the current folder and under {root})")
        p = replace(p, saliency=str(found))
    return VocSource(p)


def report(build_report: Any, params: dict[str, Any]) -> str:
    return totals_report(build_report, EXPECTED, "PASCAL VOC 2012")
