"""PASCAL VOC 2012 segmentation (+ SBD ``SegmentationClassAug``) with optional saliency masks.

Accepts the VOCdevkit layout (``JPEGImages``, ``ImageSets/Segmentation``) and MaskContrast's
``VOCSegmentation`` (``images``, ``sets``). ``train``/``val`` read ``SegmentationClass``,
``trainaug`` reads ``SegmentationClassAug``; labels 0..20 with 255 void, palette PNGs read as
indices. With ``saliency=<folder>`` each sample also gets ``sal.png`` (0/255, as MaskContrast
stores it); ids without a saliency PNG are left out (MaskContrast's rule) and counted in the
index notes, or fail with ``missing_saliency`` when ``missing_saliency=fail``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import catalog
from ..errors import InputError, SampleError
from ..sample import Record, Sample
from ..shards.spec import ClassTable, MaskMember, SplitSpec
from .common import (apply_lut, check_size, file_size, first_dir, image_dims, parse_params, problem_record,
                     raise_problem, read_bytes, read_index_map, totals_notes, totals_report)

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


@dataclass
class VocSource:
    params: VocParams
    name: str = "voc2012"
    _found: dict[str, int] = field(default_factory=dict)
    _no_saliency: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        root = voc_root(Path(self.params.src))
        if self.params.saliency:
            need = root / self.params.saliency
            if not need.is_dir():
                raise InputError(f"saliency folder not found: {need}")
        if self.params.splits:
            missing = [s for s in self.params.splits if list_file(root, s) is None]
            if missing:
                raise InputError(f"{root}: no id list for split(s) {missing} (ImageSets/Segmentation or sets/)")

    @property
    def root(self) -> Path:
        return voc_root(Path(self.params.src))

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
            notes["saliency"] = f"sal.png from {self.params.saliency}/: 0 background, 255 salient (as MaskContrast stores it)"
            skipped = self._no_saliency.get(split)
            if skipped is not None and self.params.missing_saliency == "skip":
                notes["saliency_missing"] = {"count": len(skipped), "ids": skipped[:LISTED_MISSING],
                                             "rule": "ids without a saliency PNG are left out, as MaskContrast does"}
        notes.update(totals_notes(EXPECTED.get(split), self._found.get(split)))
        return SplitSpec(self.name, split, voc_table(), masks=tuple(masks), notes=notes)

    def records(self, split: str) -> list[Record]:
        root = self.root
        listing = list_file(root, split)
        if listing is None:
            raise InputError(f"{root}: no id list for {split}")
        img_dir = first_dir(root, ["JPEGImages", "images"], "VOC images")
        mask_dir = root / MASK_DIRS[split]
        sal_dir = root / self.params.saliency if self.params.saliency else None
        out: list[Record] = []
        skipped: list[str] = []
        ids = read_ids(listing)
        for sid in ids:
            data = {"path": str(img_dir / f"{sid}.jpg"), "mask": str(mask_dir / f"{sid}.png")}
            if sal_dir is not None:
                sal = sal_dir / f"{sid}.png"
                if not sal.is_file():
                    if self.params.missing_saliency == "skip":
                        skipped.append(sid)
                        continue
                    out.append(problem_record(sid, sal, "missing_saliency", f"{sal}: no saliency mask"))
                    continue
                data["sal"] = str(sal)
            out.append(Record(sid, data, file_size(data["path"])))
        self._found[split] = len(ids)
        self._no_saliency[split] = skipped
        return out

    def load(self, record: Record) -> Sample:
        raise_problem(record)
        d = record.data
        data = read_bytes(d["path"])
        size = image_dims(data, d["path"])
        raw = read_index_map(Path(d["mask"]))
        check_size(raw, size, d["mask"])
        masks = {"seg.png": apply_lut(raw, voc_lut(), d["mask"]).astype(np.uint8)}
        if "sal" in d:
            sal = read_index_map(Path(d["sal"]))
            check_size(sal, size, d["sal"])
            try:
                masks["sal.png"] = apply_lut(sal, saliency_lut(), d["sal"]).astype(np.uint8)
            except SampleError as err:
                raise SampleError("bad_saliency", f"{err.detail} (saliency must hold 0/255)") from None
        return Sample(record.key, data, masks, meta={"id": record.key}, origin=d["path"])


def make_source(params: dict[str, Any]) -> VocSource:
    return VocSource(parse_params(VocParams, params, "voc"))


def report(build_report: Any, params: dict[str, Any]) -> str:
    return totals_report(build_report, EXPECTED, "PASCAL VOC 2012")
