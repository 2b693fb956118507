"""COCO-2017 semantic maps (0 background, 1..80 things, 255 ignore) painted from the instances JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ...errors import SampleError
from ...shards.spec import MaskMember, SplitSpec
from ..base import Listing, Record, Sample
from ..common import image_dims, input_file, list_stems, outside_root, problem, read_input, totals_notes, under_root
from . import masks
from .params import (EXPECTED, IGNORE, CocoImage, CocoParams, check_categories, coco80_table, group_annotations,
                     load_instances)

ORDER_NOTE = {"area_desc": "largest first, so smaller objects win overlaps (ties: file order)",
              "file": "annotation file order, later annotations win"}
CROWD_NOTE = {"ignore": "crowd regions written as 255, painted under the other instances",
              "class": "crowd regions painted with their class like any instance",
              "skip": "crowd regions not painted"}


def paint_semantic(anns: tuple[dict[str, Any], ...], h: int, w: int, to_label: dict[int, int],
                   order: str, crowd: str, origin: str) -> tuple[np.ndarray, dict[str, int]]:
    """One label map from instance annotations.

    Crowd regions (``crowd='ignore'``) are painted first as 255 so that the instances inside them
    stay visible; the rest are painted largest first (``area_desc``: small objects win overlaps)
    or in file order (later wins). ``crowd='class'`` paints crowds like any instance.
    """
    layers: list[tuple[int, int, int, int, Any]] = []
    crowds = 0
    for pos, ann in enumerate(anns):
        cat = int(ann["category_id"])
        if cat not in to_label:
            raise SampleError("unknown_label", f"{origin}: annotation {ann.get('id')} has category {cat}")
        is_crowd = bool(ann.get("iscrowd", 0))
        crowds += is_crowd
        if is_crowd and crowd == "skip":
            continue
        rle = masks.to_rle(ann["segmentation"], h, w, f"{origin} ann {ann.get('id')}")
        value = IGNORE if is_crowd and crowd == "ignore" else to_label[cat]
        layer = 0 if is_crowd and crowd == "ignore" else 1
        rank = -masks.area(rle) if order == "area_desc" else 0
        layers.append((layer, rank, pos, value, rle))
    # pycocotools decodes column-major; paint on a (w, h) canvas so no mask is copied.
    canvas = np.zeros((w, h), np.uint8)
    for _, _, _, value, rle in sorted(layers, key=lambda t: t[:3]):
        np.copyto(canvas, np.uint8(value), where=masks.decode_t(rle))
    out = np.ascontiguousarray(canvas.T)
    return out, {"instances": len(anns), "crowd": crowds}


def coco_records(p: CocoParams, split: str, keep: tuple[str, ...], facts: dict[str, Any]) -> Iterator[Record[Any]]:
    """A record per image of the instances JSON (image files confined to the image folder), then a
    failing ``missing_annotation`` record for each image file the JSON does not list."""
    folder = p.image_dir(split)
    path = p.annotation_file(split)
    obj = load_instances(path)
    _, to_label = coco80_table()
    check_categories(obj, to_label, path)
    anns = group_annotations(obj, keep)
    names = set()
    for img in sorted(obj["images"], key=lambda i: int(i["id"])):
        name = str(img["file_name"])
        names.add(name)
        key = Path(name).stem
        file = under_root(folder, name)
        if file is None:
            yield outside_root(key, folder, name)
            continue
        f = input_file(file)
        payload = CocoImage(file, int(img["id"]), int(img["height"]), int(img["width"]), anns.get(int(img["id"]), ()))
        yield Record(key, payload, max(f.size, 0), (f,))
    facts.update(totals_notes(EXPECTED.get(p.kind, {}).get(split), len(obj["images"])))
    for stem, f in sorted(list_stems(folder, ".jpg").items()):
        if Path(f.path).name not in names:
            yield problem(stem, f.path, "missing_annotation", f"{f.path}: not in {path.name}")


def check_dims(data: bytes, img: CocoImage) -> tuple[int, int]:
    """The image's (width, height), which must agree with the JSON."""
    w, h = image_dims(data, img.path)
    if (w, h) != (img.width, img.height):
        raise SampleError("mask_size_mismatch", f"{img.path}: file is {w}x{h}, annotations say {img.width}x{img.height}")
    return w, h


@dataclass(frozen=True)
class CocoSemanticSource:
    """COCO-2017 semantic maps (0 background, 1..80 things, 255 ignore) painted from instances."""

    params: CocoParams
    name: str = "coco2017"

    def roots(self) -> tuple[str, ...]:
        return self.params.roots()

    def splits(self) -> list[str]:
        return self.params.splits_present()

    def spec(self, split: str) -> SplitSpec:
        table, _ = coco80_table()
        p = self.params
        notes = {
            "labels": "0 background, 1..80 COCO things by rank of the COCO category id, 255 ignore",
            "source": f"instances_{split}{p.yr}.json rasterised with pycocotools (annToMask)",
            "painting_order": f"{p.order}: {ORDER_NOTE[p.order]}",
            "crowd": f"{p.crowd}: {CROWD_NOTE[p.crowd]}",
            "images_without_annotations": "kept, all background",
        }
        return SplitSpec(self.name, split, table, masks=(MaskMember("seg.png", 8, IGNORE),), notes=notes)

    def records(self, split: str) -> Listing:
        facts: dict[str, Any] = {}
        keep = ("id", "category_id", "iscrowd", "segmentation")
        return Listing(list(coco_records(self.params, split, keep, facts)), facts)

    def load(self, record: Record[CocoImage]) -> Sample:
        img = record.payload
        assert isinstance(img, CocoImage)
        data = read_input(img.path)
        w, h = check_dims(data, img)
        _, to_label = coco80_table()
        mask, counts = paint_semantic(img.anns, h, w, to_label, self.params.order, self.params.crowd, img.path)
        meta = {"image_id": img.image_id, "file_name": Path(img.path).name, **counts}
        return Sample(record.key, data, {"seg.png": mask}, meta=meta, origin=img.path)
