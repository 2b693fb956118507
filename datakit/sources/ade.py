"""ADE20K converters: A150 (SceneParsing) and A847 (ADE20K-full, MaskFormer's 847 classes).

Layouts (``layout`` param):
* ``challenge`` — ``ADEChallengeData2016/{images,annotations}/{training,validation}``; A150 PNGs
  hold 0 = other, 1..150; the shard stores the *reduced* map (0..149, 255 ignore).
* ``full`` — the ADE20K-full release (``images/ADE/{training,validation}/**/ADE_*.jpg`` with
  ``_seg.png``): class = R/10*256 + G; short side resized to 512 (labels nearest); then either
  ``mapFromADE.txt`` to A150 (as CSAILVision's convertFromADE.m) or MaskFormer's 847 table.
* ``tif`` — folders already converted by MaskFormer (``annotations[_detectron2]/<split>/*.tif``).
A847 maps are 16-bit with 65535 ignore.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from .. import catalog
from ..nearest import resize_nearest
from ..errors import InputError
from ..shards.spec import ClassEntry, ClassTable, MaskMember, SplitSpec
from .base import InputFile, Listing, Record, Sample
from .common import (apply_lut, check_size, open_rgb, first_dir, image_dims, input_file, list_stems, present_splits,
                     problem, read_input, read_index_map, read_rgb_map, totals_notes, totals_report)
from .params import parse_params

FOLDER = {"train": "training", "val": "validation"}
IGNORE = {"a150": 255, "a847": 65535}
FULL_IDS = 26 * 256  # (255 // 10) * 256 + 255 < this
EXPECTED = {
    "challenge": {"train": 20_210, "val": 2_000},
    "full": {"train": 25_574, "val": 2_000},  # ADE20K_2021_17_01
    "tif": {"train": 25_574, "val": 2_000},
}


@dataclass(frozen=True)
class AdeParams:
    """``label_resize``: ``center`` (MATLAB imresize / PIL nearest) or ``floor`` (cv2 INTER_NEAREST)."""

    src: str = ""
    kind: str = "a150"
    layout: str = ""
    splits: tuple[str, ...] = ()
    short_side: int = 512
    label_resize: str = ""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "kind": ("a150", "a847"), "layout": ("challenge", "full", "tif"),
        "splits": ("train", "val"), "label_resize": ("center", "floor"),
    }
    REQUIRED: ClassVar[dict[str, str]] = {"src": "no dataset root given (pass --src DIR or -p src=DIR)"}

    def __post_init__(self) -> None:
        if self.kind == "a150" and self.lay == "tif":
            raise InputError("ade: layout 'tif' holds A847 maps; use kind=a847")
        if self.kind == "a847" and self.lay == "challenge":
            raise InputError("ade: the challenge release has only A150 labels; use layout=full or tif for a847")
        if self.short_side < 1:
            raise InputError("ade: short_side must be positive")

    @property
    def lay(self) -> str:
        return self.layout or ("challenge" if self.kind == "a150" else "full")

    @property
    def rule(self) -> str:
        """MaskFormer's cv2 rule for A847; convertFromADE.m's MATLAB rule for A150."""
        return self.label_resize or ("floor" if self.kind == "a847" else "center")


# ---------------------------------------------------------------- tables and look-ups

@lru_cache(maxsize=None)
def class_table(kind: str) -> ClassTable:
    if kind == "a150":
        with open(catalog.manifest("classes/ade150_objectInfo150.csv"), encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        short = catalog.read_lines("classes/ade150_names_larvseg.txt")
        entries = [ClassEntry(int(r["Idx"]) - 1, r["Name"], {"png_value": int(r["Idx"]), "short": short[int(r["Idx"]) - 1]})
                   for r in rows]
        return ClassTable(tuple(entries), IGNORE[kind])
    rows847 = catalog.manifest_json("classes/ade847_maskformer.json")
    entries = [ClassEntry(int(r["trainId"]), r["name"], {"ade_id": int(r["id"])}) for r in rows847]  # type: ignore[union-attr]
    return ClassTable(tuple(sorted(entries, key=lambda e: e.id)), IGNORE[kind])


@lru_cache(maxsize=None)
def reduce_lut() -> np.ndarray:
    """Challenge PNG value -> stored value: 0 -> 255, k -> k-1 (mmseg's reduce_zero_label)."""
    lut = np.full(256, -1, np.int32)
    lut[0] = 255
    lut[1:151] = np.arange(150)
    return lut


@lru_cache(maxsize=None)
def full_lut(kind: str) -> np.ndarray:
    """ADE-full class id -> stored value; ids without a class become the ignore id."""
    lut = np.full(FULL_IDS, IGNORE[kind], np.int32)
    if kind == "a150":
        for line in catalog.read_lines("classes/ade150_to_adefull_mapFromADE.txt"):
            idx, full_id = (int(v) for v in line.split()[:2])
            lut[full_id] = idx - 1
    else:
        for row in catalog.manifest_json("classes/ade847_maskformer.json"):  # type: ignore[union-attr]
            lut[int(row["id"])] = int(row["trainId"])
    return lut


@lru_cache(maxsize=None)
def tif_lut() -> np.ndarray:
    """Already converted A847 maps: 0..846 and 65535 are valid, nothing else."""
    lut = np.full(65536, -1, np.int32)
    lut[:847] = np.arange(847)
    lut[65535] = 65535
    return lut


# ---------------------------------------------------------------- resizing

def target_size(w: int, h: int, short: int, kind: str) -> tuple[int, int]:
    """Output (w, h): the short side becomes ``short`` when larger, by each tool's own rule.

    convertFromADE.m resizes only when one side is strictly shorter (MATLAB round: half away
    from zero); MaskFormer also resizes squares and uses Python's ``round``.
    """
    if kind == "a150":
        half_up = lambda x: int(math.floor(x + 0.5))  # noqa: E731
        if h < w and h > short:
            return half_up(w / h * short), short
        if w < h and w > short:
            return short, half_up(h / w * short)
        return w, h
    if w >= h > short:
        return round(w / float(h) * short), short
    if h >= w > short:
        return short, round(h / float(w) * short)
    return w, h


# ---------------------------------------------------------------- scanning

def scan_full(root: Path) -> dict[str, tuple[dict[str, InputFile], dict[str, InputFile]]]:
    """Per split, the ``ADE_*.jpg`` images and ``*_seg.png`` maps of an ADE20K-full tree.

    The split comes from the file name as in MaskFormer (``ADE_val_*`` is validation); the
    per-image instance folders are not descended into.
    """
    found: dict[str, tuple[dict[str, InputFile], dict[str, InputFile]]] = {"train": ({}, {}), "val": ({}, {})}
    for dirpath, dirnames, filenames in os.walk(root):
        stems = {n[:-4] for n in filenames if n.lower().endswith(".jpg")}
        dirnames[:] = sorted(d for d in dirnames if d not in stems)
        for name in filenames:
            if name.lower().endswith(".jpg"):
                stem, kind = name[:-4], 0
            elif name.endswith("_seg.png"):
                stem, kind = name[: -len("_seg.png")], 1
            else:
                continue
            if not stem.startswith("ADE_"):
                continue
            split = "val" if stem.split("_")[1] == "val" else "train"
            found[split][kind][stem] = input_file(os.path.join(dirpath, name))
    return found


@dataclass(frozen=True, slots=True)
class AdePair:
    """An ADE20K image and its label file (challenge PNG, full-release ``_seg.png`` or MaskFormer ``.tif``)."""

    path: str
    label: str


def pair_records(images: dict[str, InputFile], labels: dict[str, InputFile], what: str) -> list[Record[Any]]:
    """One record per stem; a stem with only one of the two files becomes a failing record."""
    out: list[Record[Any]] = []
    for stem in sorted(set(images) | set(labels)):
        if stem not in labels:
            out.append(problem(stem, images[stem].path, "missing_mask", f"{images[stem].path}: no {what}"))
        elif stem not in images:
            out.append(problem(stem, labels[stem].path, "missing_image", f"{labels[stem].path}: no image"))
        else:
            img, lab = images[stem], labels[stem]
            out.append(Record(stem, AdePair(img.path, lab.path), img.size, (img, lab)))
    return out


# ---------------------------------------------------------------- source

@dataclass(frozen=True)
class AdeSource:
    params: AdeParams

    @property
    def name(self) -> str:
        return "ade150" if self.params.kind == "a150" else "ade847"

    def roots(self) -> tuple[str, ...]:
        return (self.params.src,)

    def splits(self) -> list[str]:
        """The chosen splits, or by default those of train/val whose image folder exists."""
        if self.params.splits:
            return list(self.params.splits)
        root = self.root()
        found: dict[str, str | None] = {}
        for split, folder in FOLDER.items():
            where = [f"images/{folder}", f"images_detectron2/{folder}"] if self.params.lay != "full" else [folder]
            missing = where and not any((root / w).is_dir() for w in where)
            found[split] = f"no {' or '.join(where)} under {root}" if missing else None
        return present_splits(self.name, found, "pass --src the dataset root or --split to choose")

    def root(self) -> Path:
        """The folder the layout's relative paths start from (``src`` or its usual sub-folder)."""
        src = Path(self.params.src)
        if self.params.lay == "full":
            return first_dir(src, ["images/ADE", "ADE20K_2021_17_01/images/ADE", "ADE"], "ADE20K-full images/ADE")
        sub = "ADEChallengeData2016" if self.params.lay == "challenge" else "ADE20K_2021_17_01"
        for cand in (src, src / sub):
            if (cand / "images").is_dir() or (cand / "images_detectron2").is_dir():
                return cand
        raise InputError(f"ADE20K {self.params.lay} layout not found: no images/ folder in {src} or {src / sub}")

    def spec(self, split: str) -> SplitSpec:
        p = self.params
        kind, lay = p.kind, p.lay
        notes: dict[str, Any] = {"layout": lay}
        if kind == "a150":
            notes["labels"] = ("reduced A150 map: stored value = objectInfo150 Idx - 1 (0..149), 255 = other/unlabeled; "
                               "reduce_zero_label is already applied, do not apply it again")
            member = MaskMember("seg.png", 8, 255)
        else:
            notes["labels"] = "MaskFormer ADE20K-full 847 trainIds (0..846), 65535 = unlabeled / not in the 847 classes"
            member = MaskMember("seg.png", 16, 65535)
        if lay == "full":
            notes["conversion"] = {
                "class_id": "(R // 10) * 256 + G",
                "mapping": "mapFromADE.txt (convertFromADE.m)" if kind == "a150" else "ade847_maskformer.json",
                "resize": f"short side {p.short_side} when larger; labels nearest ({p.rule}), image bilinear",
            }
        return SplitSpec(self.name, split, class_table(kind), masks=(member,), notes=notes)

    def records(self, split: str) -> Listing:
        root, lay = self.root(), self.params.lay
        if lay == "full":
            images, labels = scan_full(root)[split]
            what = "_seg.png"
        else:
            folder = FOLDER[split]
            img_dir = first_dir(root, [f"images/{folder}", f"images_detectron2/{folder}"], f"ADE20K {folder} images")
            if lay == "challenge":
                lab_dir, suffix = first_dir(root, [f"annotations/{folder}"], f"ADE20K {folder} annotations"), ".png"
            else:
                lab_dir = first_dir(root, [f"annotations/{folder}", f"annotations_detectron2/{folder}"], f"A847 {folder} maps")
                suffix = ".tif"
            images, labels, what = list_stems(img_dir, ".jpg"), list_stems(lab_dir, suffix), suffix
        facts = totals_notes(EXPECTED[lay].get(split), len(set(images) & set(labels)))
        return Listing(pair_records(images, labels, what), facts)

    def load(self, record: Record[AdePair]) -> Sample:
        pair = record.payload
        assert isinstance(pair, AdePair)
        p = self.params
        path, label = pair.path, pair.label
        data = read_input(path)
        size = image_dims(data, path)
        meta: dict[str, Any] = {"file_name": Path(path).name}
        if p.lay == "challenge":
            raw = read_index_map(Path(label))
            check_size(raw, size, label)
            mask = apply_lut(raw, reduce_lut(), label).astype(np.uint8)
            return Sample(record.key, data, {"seg.png": mask}, meta=meta, origin=path)
        if p.lay == "tif":
            raw = read_index_map(Path(label))
            check_size(raw, size, label)
            mask = apply_lut(raw, tif_lut(), label).astype(np.uint16)
            return Sample(record.key, data, {"seg.png": mask}, meta=meta, origin=path)
        rgb = read_rgb_map(Path(label))
        check_size(rgb, size, label)
        classes = (rgb[..., 0].astype(np.int32) // 10) * 256 + rgb[..., 1].astype(np.int32)
        w, h = target_size(size[0], size[1], p.short_side, p.kind)
        classes = resize_nearest(classes, (h, w), p.rule)
        dtype = np.uint8 if p.kind == "a150" else np.uint16
        mask = full_lut(p.kind)[classes].astype(dtype)
        image: bytes | np.ndarray = data
        if (w, h) != size:
            image = np.asarray(open_rgb(data, path).resize((w, h), Image.BILINEAR))
            meta["original_size"] = list(size)
        return Sample(record.key, image, {"seg.png": mask}, meta=meta, origin=path)


def make_source(params: dict[str, Any]) -> AdeSource:
    return AdeSource(parse_params(AdeParams, params, "ade"))


def report(build_report: Any, params: dict[str, Any]) -> str:
    p = parse_params(AdeParams, params, "ade")
    return totals_report(build_report, EXPECTED[p.lay], f"ADE20K {p.kind} ({p.lay} layout)")
