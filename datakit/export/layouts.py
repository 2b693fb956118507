"""Where each file of a split goes in each layout, and how its label map is encoded.

One ``SplitLayout`` per (layout, split): the image folder, the mask folders with their suffix and
encoding, the class folders (imagefolder), and ``config``: the values the framework's config must
hold to read it. Known datasets get the folder names and label conventions of their official
preparation scripts (see ``datakit.export``); every other dataset gets the generic layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError
from ..shards.codecs import encode_mask
from ..shards.spec import MaskMember, SplitSpec

LAYOUTS = ("mmseg", "detectron2", "imagefolder")
ADE_SPLITS = {"train": "training", "val": "validation"}
COCO_SPLITS = {"train": "train2017", "val": "val2017"}


@dataclass(frozen=True)
class MaskTarget:
    """One mask member written as files: ``<folder>/<key><suffix>``."""

    member: str                 # shard member, e.g. "seg.png"
    folder: str
    suffix: str                 # ".png", "_labelTrainIds.png", ".tif"
    encoding: str               # "png8" (mode L) | "tif16" (uint16 TIFF, PIL mode I;16)
    transform: str = ""         # "" | "unreduce": ADE-150 back to 0 = other, 1..150 (mmseg reduce_zero_label=True)


@dataclass(frozen=True)
class SplitLayout:
    layout: str
    dataset: str
    split: str
    image_folder: str
    image_suffix: str = ".jpg"
    masks: tuple[MaskTarget, ...] = ()
    class_folders: tuple[tuple[int, str], ...] = ()   # imagefolder with ``cls``: class id -> folder name
    config: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Changes whenever a file name or encoding would change (trusted by the resume markers)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def folders(self) -> dict[int, str]:
        return dict(self.class_folders)


def encode_label(mask: np.ndarray, target: MaskTarget, where: str) -> bytes:
    """The label file bytes: the stored integer ids, unchanged unless the target's transform says so."""
    ids = np.asarray(mask)
    if ids.size and int(ids.min()) < 0:
        raise InputError(f"{where}: negative label ids cannot be written")
    if target.transform == "unreduce":
        if ids.size and not np.all((ids <= 149) | (ids == 255)):
            raise InputError(f"{where}: an ADE-150 reduced map holds only 0..149 and 255")
        ids = np.where(ids == 255, 0, ids.astype(np.int32) + 1)
    top = int(ids.max()) if ids.size else 0
    if target.encoding == "png8":
        if top > 255:
            raise InputError(f"{where}: label id {top} does not fit an 8-bit PNG")
        return encode_mask(ids.astype(np.uint8), 8)
    if top > 65535:
        raise InputError(f"{where}: label id {top} does not fit a 16-bit TIFF")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint16)).save(buf, format="TIFF")  # mode I;16, uncompressed
    return buf.getvalue()


def _encoding(member: MaskMember) -> tuple[str, str]:
    """(encoding, suffix) of a mask member in the generic layouts: 8-bit PNG where ids fit, else uint16 TIFF."""
    return ("png8", ".png") if member.bits == 8 and member.fill <= 255 else ("tif16", ".tif")


def _extra_masks(spec: SplitSpec, split_dir: str) -> tuple[MaskTarget, ...]:
    """Masks beyond the first (VOC saliency ``sal.png``): ``<role or member name>/<split>/<key>.png``."""
    out = []
    for m in spec.masks[1:]:
        enc, suffix = _encoding(m)
        name = m.role if m.role not in ("", "semantic") else m.ext.rsplit(".", 1)[0]
        out.append(MaskTarget(m.ext, f"{name}/{split_dir}", suffix, enc))
    return tuple(out)


def _ade150(layout: str, spec: SplitSpec) -> SplitLayout:
    seg, d = spec.masks[0], ADE_SPLITS.get(spec.split, spec.split)
    if layout == "mmseg":
        main = MaskTarget(seg.ext, f"annotations/{d}", ".png", "png8", "unreduce")
        config = {"type": "ADE20KDataset", "data_prefix": {"img_path": f"images/{d}", "seg_map_path": f"annotations/{d}"},
                  "img_suffix": ".jpg", "seg_map_suffix": ".png", "reduce_zero_label": True, "ignore_index": 255,
                  "labels": "raw ADEChallengeData2016 values: 0 other, 1..150; reduce_zero_label maps them to 0..149 + 255"}
    else:
        main = MaskTarget(seg.ext, f"annotations_detectron2/{d}", ".png", "png8")
        config = {"register": f"load_sem_seg('annotations_detectron2/{d}', 'images/{d}', gt_ext='png', image_ext='jpg')",
                  "ignore_label": 255, "labels": "0..149 = objectInfo150 index - 1, 255 other (prepare_ade20k_sem_seg.py)"}
    return SplitLayout(layout, spec.dataset, spec.split, f"images/{d}", masks=(main,), config=config)


def _ade847(layout: str, spec: SplitSpec) -> SplitLayout:
    seg, d = spec.masks[0], ADE_SPLITS.get(spec.split, spec.split)
    if layout == "mmseg":
        main = MaskTarget(seg.ext, f"annotations/{d}", ".tif", "tif16")
        config = {"type": "ADE20KFULLDataset (LarvSeg) or BaseSegDataset",
                  "data_prefix": {"img_path": f"images/{d}", "seg_map_path": f"annotations/{d}"},
                  "img_suffix": ".jpg", "seg_map_suffix": ".tif", "reduce_zero_label": False,
                  "ignore_index": "65535 (uint16), or -1 with LarvSeg's LoadAnnotations(int16=True)",
                  "labels": "MaskFormer trainIds 0..846, 65535 unlabeled"}
        return SplitLayout(layout, spec.dataset, spec.split, f"images/{d}", masks=(main,), config=config)
    main = MaskTarget(seg.ext, f"annotations_detectron2/{d}", ".tif", "tif16")
    config = {"register": f"load_sem_seg('annotations_detectron2/{d}', 'images_detectron2/{d}', gt_ext='tif', "
                          "image_ext='jpg') as register_ade20k_full.py", "ignore_label": 65535,
              "labels": "MaskFormer trainIds 0..846, 65535 unlabeled (uint16 TIFF)"}
    return SplitLayout(layout, spec.dataset, spec.split, f"images_detectron2/{d}", masks=(main,), config=config)


def _cocostuff171(layout: str, spec: SplitSpec) -> SplitLayout:
    seg, d = spec.masks[0], COCO_SPLITS.get(spec.split, spec.split)
    if layout == "mmseg":
        main = MaskTarget(seg.ext, f"annotations/{d}", "_labelTrainIds.png", "png8")
        config = {"type": "COCOStuffDataset", "data_prefix": {"img_path": f"images/{d}", "seg_map_path": f"annotations/{d}"},
                  "img_suffix": ".jpg", "seg_map_suffix": "_labelTrainIds.png", "reduce_zero_label": False,
                  "ignore_index": 255, "labels": "trainIds 0..170, 255 unlabeled (coco_stuff164k.py)"}
        return SplitLayout(layout, spec.dataset, spec.split, f"images/{d}", masks=(main,), config=config)
    main = MaskTarget(seg.ext, f"stuffthingmaps_detectron2/{d}", ".png", "png8")
    config = {"register": f"load_sem_seg('stuffthingmaps_detectron2/{d}', '{d}', gt_ext='png', image_ext='jpg')",
              "ignore_label": 255, "labels": "trainIds 0..170, 255 unlabeled"}
    return SplitLayout(layout, spec.dataset, spec.split, d, masks=(main,), config=config)


# datasets whose official preparation scripts fix folder names and label files, used when the stored
# mask has the expected width (8-bit for ADE-150 and COCO-Stuff, wider for ADE-847's 65535 ignore)
PROFILES = {"ade150": (True, _ade150), "ade847": (False, _ade847), "cocostuff171": (True, _cocostuff171)}


def _seg_layout(layout: str, spec: SplitSpec) -> SplitLayout:
    if not spec.masks:
        raise InputError(f"{spec.dataset}/{spec.split} has no mask member: the {layout} layout holds semantic "
                         "label maps; use --layout imagefolder")
    eight_bit, profile = PROFILES.get(spec.dataset, (True, None))
    if profile is not None and (spec.masks[0].bits == 8) == eight_bit and len(spec.masks) == 1:
        return profile(layout, spec)
    return _generic_seg(layout, spec)


def _generic_seg(layout: str, spec: SplitSpec) -> SplitLayout:
    seg, split, ignore = spec.masks[0], spec.split, spec.ignore_id
    enc, suffix = _encoding(seg)
    ann = "annotations" if layout == "mmseg" else "annotations_detectron2"
    main = MaskTarget(seg.ext, f"{ann}/{split}", suffix, enc)
    if layout == "mmseg":
        config = {"type": "BaseSegDataset", "data_prefix": {"img_path": f"images/{split}", "seg_map_path": f"{ann}/{split}"},
                  "img_suffix": ".jpg", "seg_map_suffix": suffix, "reduce_zero_label": False, "ignore_index": ignore}
    else:
        config = {"register": f"load_sem_seg('{ann}/{split}', 'images/{split}', gt_ext='{suffix[1:]}', image_ext='jpg')",
                  "ignore_label": ignore}
    config["labels"] = "the shard's class ids unchanged" + ("" if enc == "png8" else " (uint16 TIFF: ids above 255)")
    return SplitLayout(layout, spec.dataset, split, f"images/{split}", masks=(main, *_extra_masks(spec, split)), config=config)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:]")


def _folder_name(name: str) -> str:
    clean = _UNSAFE.sub("_", name).strip().strip(".")
    return clean or "_"


def class_folder_names(spec: SplitSpec) -> tuple[tuple[int, str], ...]:
    """One folder per class: the wnid where the class table has one, else the class name made safe
    (names that collide get ``_<id>``)."""
    if spec.classes is None:
        raise InputError(f"{spec.dataset}/{spec.split} has a cls member but no class table")
    raw = [(e.id, _folder_name(str(e.extra.get("wnid") or e.name))) for e in spec.classes.entries]
    counts: dict[str, int] = {}
    for _, name in raw:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return tuple((cid, name if counts[name.lower()] == 1 else f"{name}_{cid}") for cid, name in raw)


def _imagefolder(spec: SplitSpec) -> SplitLayout:
    split = spec.split
    if spec.cls:
        folders = class_folder_names(spec)
        config = {"read_with": f"torchvision.datasets.ImageFolder('<out>/{split}')",
                  "labels": "one folder per class (wnid or class name); ImageFolder numbers folders in sorted order, "
                            "the manifest maps each folder to the shard's class id"}
        return SplitLayout("imagefolder", spec.dataset, split, split, class_folders=folders, config=config)
    if spec.masks:
        raise InputError(f"{spec.dataset}/{spec.split} has masks and no image-level label: the imagefolder layout would "
                         "drop them; use --layout mmseg or detectron2")
    config = {"read_with": f"any image-folder reader on '<out>/{split}' (unlabelled: the keys' relative paths)"}
    return SplitLayout("imagefolder", spec.dataset, split, split, config=config)


def plan_split(layout: str, spec: SplitSpec) -> SplitLayout:
    """The layout of one split, or a one-line error when the layout cannot hold it."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if not spec.image:
        raise InputError(f"{spec.dataset}/{spec.split} has no images to export")
    return _imagefolder(spec) if layout == "imagefolder" else _seg_layout(layout, spec)
