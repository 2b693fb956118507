"""The records of one ImageNet-S split, from the official lists and a local ImageNet-1k copy.

A listed image that is not on disk is an InputError naming how many and the first few; with
``allow_missing`` it is a warning, and the image stays in the records as a ``missing_image``
Problem so the build records it as a failed sample (a count in the index) instead of dropping it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

from ..errors import InputError
from ..sources.base import InputFile, Problem, Record
from .inputs import ImageFile, MaskRef, index_val, list_class_folder, open_annotations, stat_file
from .lists import SubsetLists, load_lists
from .params import ImageNetSParams

MASKED_SPLITS = {"train-semi": "train-semi-segmentation", "validation": "validation-segmentation"}
SHOWN_MISSING = 5
MaskFinder = Callable[[str], "MaskRef | None"]


def _stem(name: str) -> str:
    """The sample key: the file name without its extension (unique within a split)."""
    return os.path.splitext(name)[0]


@dataclass(frozen=True, slots=True)
class ImageNetSImage:
    """One ImageNet-S sample: the ImageNet file (``rel`` to the root), its subset, ImageNet-S class
    (``wnid``, ``cls``), the train folder it came from (``source_wnid``, differs for the 919 merges),
    the ImageNet val label, and its official mask when the split declares masks (``masked``)."""

    path: str
    rel: str
    subset: int
    wnid: str
    cls: int
    source_wnid: str = ""
    label: str = ""
    masked: bool = False
    mask: MaskRef | None = None


def _record(f: ImageFile, name: str, img: ImageNetSImage) -> Record[Any]:
    files: tuple[InputFile, ...] = (f.stamp(),) if img.mask is None else (f.stamp(), img.mask.stamp())
    return Record(_stem(name), replace(img, path=f.path, rel=f.rel), f.size, files)


def _missing(rel: str, name: str) -> Record[Any]:
    """A listed image that is not on disk: a ``missing_image`` failure of the build."""
    return Record(_stem(name), Problem("missing_image", rel, rel))


def missing_train_folders(p: ImageNetSParams, subset: int) -> list[str]:
    """``train/<wnid>`` folders the subset needs that the ImageNet copy lacks."""
    needed = [s for sources in load_lists(subset).train_sources().values() for s in sources]
    return [f"train/{w}/" for w in needed if not os.path.isdir(os.path.join(p.imagenet, "train", w))]


Built = tuple[list[Record[Any]], list[str]]  # records, relative paths of the missing images


def _train(p: ImageNetSParams, lists: SubsetLists, split: str, masks: MaskFinder | None, sizes: bool) -> Built:
    """Every image of the class folders of the subset (plus merged folders), in category order."""
    records: list[Record[Any]] = []
    missing: list[str] = []
    for cls, (wnid, sources) in enumerate(lists.train_sources().items(), 1):
        for source in sources:
            files = list_class_folder(p.imagenet, source, sizes)
            if files is None:
                missing.append(f"train/{source}/")
                continue
            img = ImageNetSImage("", "", lists.subset, wnid, cls, source)
            records.extend(_record(f, os.path.basename(f.rel), img) for f in files)
    return records, missing


def _semi(p: ImageNetSParams, lists: SubsetLists, split: str, masks: MaskFinder | None, sizes: bool) -> Built:
    """The listed train-semi images, found under ``train/<source wnid>/``."""
    records: list[Record[Any]] = []
    missing: list[str] = []
    for e in lists.semi:
        rel = f"train/{e.source_wnid}/{e.name}"
        mask = masks(f"train-semi-segmentation/{e.wnid}/{e.mask_name}") if masks is not None else None
        img = ImageNetSImage("", "", lists.subset, e.wnid, lists.class_id(e.wnid), e.source_wnid,
                             masked=masks is not None, mask=mask)
        f = stat_file(p.imagenet, rel)
        if f is None:
            missing.append(rel)
            records.append(_missing(rel, e.name))
        else:
            records.append(_record(f, e.name, img))
    return records, missing


def _val(p: ImageNetSParams, lists: SubsetLists, split: str, masks: MaskFinder | None, sizes: bool) -> Built:
    """The listed validation or test images, found by basename anywhere in ``val/``."""
    found = index_val(p.imagenet)
    records: list[Record[Any]] = []
    missing: list[str] = []
    for e in getattr(lists, split):
        mask = masks(f"validation-segmentation/{e.wnid}/{e.mask_name}") if masks is not None else None
        img = ImageNetSImage("", "", lists.subset, e.wnid, lists.class_id(e.wnid), label=e.label,
                             masked=masks is not None, mask=mask)
        f = found.get(e.name)
        if f is None:
            rel = f"val/{e.label}/{e.name}"
            missing.append(rel)
            records.append(_missing(rel, e.name))
        else:
            records.append(_record(f, e.name, img))
    return records, missing


def _check_missing(p: ImageNetSParams, subset: int, split: str, missing: list[str]) -> None:
    """Raise an InputError naming the missing inputs, or warn when they are allowed."""
    if not missing:
        return
    shown = ", ".join(missing[:SHOWN_MISSING]) + (", ..." if len(missing) > SHOWN_MISSING else "")
    noun = "class folder(s)" if split == "train" else "source image(s)"
    what = f"ImageNetS{subset} {split}: {len(missing)} {noun} missing under {p.imagenet}: {shown}"
    if not p.allow_missing:
        raise InputError(f"{what} (pass --allow-missing to build without them)")
    counted = "recorded in the index notes" if split == "train" else "counted as missing_image failures"
    warnings.warn(f"{what}; building without them ({counted})", UserWarning, stacklevel=3)


def _mask_finder(p: ImageNetSParams, subset: int, split: str) -> MaskFinder | None:
    """A lookup of official masks for the split, or None when it declares none."""
    if p.annotations is None or split not in MASKED_SPLITS:
        return None
    return open_annotations(p.annotations, subset).lookup


def _check_masks(p: ImageNetSParams, subset: int, split: str, records: list[Record[Any]]) -> None:
    """Reject annotations holding none of the split's masks; warn about the few absent ones."""
    if p.annotations is None or split not in MASKED_SPLITS:
        return
    present = [r.payload for r in records if isinstance(r.payload, ImageNetSImage)]
    absent = [img.rel for img in present if img.mask is None]
    if len(absent) == len(present) and present:
        raise InputError(f"annotations {p.annotations}: none of the {len(present)} {MASKED_SPLITS[split]} "
                         f"masks of ImageNetS{subset} is there")
    if absent:
        warnings.warn(f"ImageNetS{subset} {split}: {len(absent)} image(s) have no mask in {p.annotations} "
                      f"(e.g. {absent[0]}); they get an all-ignore mask", UserWarning, stacklevel=3)


BUILDERS = {"train": _train, "train-semi": _semi, "validation": _val, "test": _val}


def split_records(p: ImageNetSParams, subset: int, split: str, sizes: bool = True) -> list[Record[Any]]:
    """Records of one split in list order (train: category order, then file name)."""
    if split not in BUILDERS:
        raise InputError(f"imagenets has no split {split!r}")
    records, missing = BUILDERS[split](p, load_lists(subset), split, _mask_finder(p, subset, split), sizes)
    _check_missing(p, subset, split, missing)
    _check_masks(p, subset, split, records)
    return records
