"""The records of one ImageNet-S split, from the official lists and a local ImageNet-1k copy.

A listed image that is not on disk is an InputError naming how many and the first few; with
``allow_missing`` it is a warning, and the image stays in the records marked ``missing`` so the
build records it as a failed sample (a count in the index) instead of dropping it silently.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

from ..errors import InputError
from ..sample import Record
from .inputs import ImageFile, MaskRef, index_val, list_class_folder, open_annotations, stat_file
from .lists import SubsetLists, load_lists
from .params import ImageNetSParams

MASKED_SPLITS = {"train-semi": "train-semi-segmentation", "validation": "validation-segmentation"}
SHOWN_MISSING = 5
MaskFinder = Callable[[str], "MaskRef | None"]


def _stem(name: str) -> str:
    """The sample key: the file name without its extension (unique within a split)."""
    return os.path.splitext(name)[0]


def _record(f: ImageFile, name: str, data: dict) -> Record:
    """``data`` holds the absolute path, subset, wnid (the ImageNet-S class), cls and, when the
    split declares masks, mask; kept this small because S919 train has 1.2M records."""
    return Record(_stem(name), {"path": f.path, **data}, f.size)


def _missing(p: ImageNetSParams, rel: str, name: str, data: dict) -> Record:
    """A placeholder for a listed image that is not on disk (its load raises missing_image)."""
    return Record(_stem(name), {"path": os.path.join(p.imagenet, rel), "missing": True, **data}, 0)


def missing_train_folders(p: ImageNetSParams, subset: int) -> list[str]:
    """``train/<wnid>`` folders the subset needs that the ImageNet copy lacks."""
    needed = [s for sources in load_lists(subset).train_sources().values() for s in sources]
    return [f"train/{w}/" for w in needed if not os.path.isdir(os.path.join(p.imagenet, "train", w))]


Built = tuple[list[Record], list[str]]  # records, relative paths of the missing images


def _train(p: ImageNetSParams, lists: SubsetLists, split: str, masks: MaskFinder | None, sizes: bool) -> Built:
    """Every image of the class folders of the subset (plus merged folders), in category order."""
    records, missing = [], []
    for cls, (wnid, sources) in enumerate(lists.train_sources().items(), 1):
        for source in sources:
            files = list_class_folder(p.imagenet, source, sizes)
            if files is None:
                missing.append(f"train/{source}/")
                continue
            data = {"subset": lists.subset, "wnid": wnid, "cls": cls, "source_wnid": source}
            records.extend(_record(f, os.path.basename(f.rel), data) for f in files)
    return records, missing


def _semi(p: ImageNetSParams, lists: SubsetLists, split: str, masks: MaskFinder | None, sizes: bool) -> Built:
    """The listed train-semi images, found under ``train/<source wnid>/``."""
    records, missing = [], []
    for e in lists.semi:
        rel = f"train/{e.source_wnid}/{e.name}"
        data = {"subset": lists.subset, "wnid": e.wnid, "cls": lists.class_id(e.wnid), "source_wnid": e.source_wnid}
        if masks is not None:
            data["mask"] = masks(f"train-semi-segmentation/{e.wnid}/{e.mask_name}")
        f = stat_file(p.imagenet, rel)
        if f is None:
            missing.append(rel)
            records.append(_missing(p, rel, e.name, data))
        else:
            records.append(_record(f, e.name, data))
    return records, missing


def _val(p: ImageNetSParams, lists: SubsetLists, split: str, masks: MaskFinder | None, sizes: bool) -> Built:
    """The listed validation or test images, found by basename anywhere in ``val/``."""
    found = index_val(p.imagenet)
    records, missing = [], []
    for e in getattr(lists, split):
        data = {"subset": lists.subset, "wnid": e.wnid, "cls": lists.class_id(e.wnid), "label": e.label}
        if masks is not None:
            data["mask"] = masks(f"validation-segmentation/{e.wnid}/{e.mask_name}")
        f = found.get(e.name)
        if f is None:
            rel = f"val/{e.label}/{e.name}"
            missing.append(rel)
            records.append(_missing(p, rel, e.name, data))
        else:
            records.append(_record(f, e.name, data))
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


def _check_masks(p: ImageNetSParams, subset: int, split: str, records: list[Record]) -> None:
    """Reject annotations holding none of the split's masks; warn about the few absent ones."""
    if p.annotations is None or split not in MASKED_SPLITS:
        return
    absent = [r.data["path"] for r in records if r.data.get("mask") is None]
    if len(absent) == len(records) and records:
        raise InputError(f"annotations {p.annotations}: none of the {len(records)} {MASKED_SPLITS[split]} "
                         f"masks of ImageNetS{subset} is there")
    if absent:
        warnings.warn(f"ImageNetS{subset} {split}: {len(absent)} image(s) have no mask in {p.annotations} "
                      f"(e.g. {absent[0]}); they get an all-ignore mask", UserWarning, stacklevel=3)


BUILDERS = {"train": _train, "train-semi": _semi, "validation": _val, "test": _val}


def split_records(p: ImageNetSParams, subset: int, split: str, sizes: bool = True) -> list[Record]:
    """Records of one split in list order (train: category order, then file name)."""
    if split not in BUILDERS:
        raise InputError(f"imagenets has no split {split!r}")
    records, missing = BUILDERS[split](p, load_lists(subset), split, _mask_finder(p, subset, split), sizes)
    _check_missing(p, subset, split, missing)
    _check_masks(p, subset, split, records)
    return records
