"""COCO-20K (LOST/ZUTIS): the 19,817 listed train2014 images with their instances, for mask AP.

Each sample stores the image and, in its ``json`` member, every instance as a compressed RLE
(pycocotools form) with the original COCO ``category_id``, its contiguous ``label`` (1..80),
``bbox`` [x, y, w, h], ``area`` and ``iscrowd``. The build also writes
``instances_train2014_sel20k.json`` (images and annotations filtered to the list, categories
whole) beside the shards, which is what COCOeval needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ... import catalog
from ...errors import InputError, SampleError
from ...shards.spec import ClassEntry, ClassTable, SplitSpec
from ..base import Listing, Record, Sample
from ..common import input_file, outside_root, problem, read_input, totals_notes, totals_report, under_root
from . import masks
from .params import CocoImage, CocoParams, check_categories, coco80_table, group_annotations, load_instances
from .semantic import check_dims

SPLIT = "train"
EXPECTED = {SPLIT: 19_817}
SEL_NAME = "instances_train2014_sel20k.json"
_KEEP = ("id", "category_id", "iscrowd", "bbox", "area", "segmentation")


def read_filelist(spec: str) -> list[str]:
    """The image list: a packaged manifest (``zutis/coco_20k_filenames.txt``) or a file path."""
    path = Path(spec)
    if path.is_file():
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        lines = catalog.read_lines(spec)
    if not lines:
        raise InputError(f"COCO-20K file list {spec} is empty")
    return lines


def image_id_of(entry: str) -> int:
    """``train2014/COCO_train2014_000000560992.jpg`` -> 560992 (LOST's rule)."""
    stem = Path(entry).stem
    try:
        return int(stem.split("_")[-1])
    except ValueError:
        raise InputError(f"COCO-20K list entry {entry!r} does not end in an image id") from None


@lru_cache(maxsize=1)
def coco_id_table() -> ClassTable:
    """The 80 thing classes under their original COCO ids (instances keep those ids)."""
    _, to_label = coco80_table()
    rows = catalog.manifest_json("classes/coco80.json")
    entries = [ClassEntry(int(r["coco_id"]), r["name"], {"label": to_label[int(r["coco_id"])]}) for r in rows]  # type: ignore[union-attr]
    return ClassTable(tuple(sorted(entries, key=lambda e: e.id)), None)


@dataclass(frozen=True)
class Coco20kSource:
    """COCO-20K: image + per-instance RLE masks, ids, boxes and crowd flags in the json member."""

    params: CocoParams
    name: str = "coco20k"

    def roots(self) -> tuple[str, ...]:
        return self.params.roots()

    def splits(self) -> list[str]:
        return [SPLIT]

    def spec(self, split: str) -> SplitSpec:
        notes = {
            "labels": "instance-level: json 'instances' = [{id, category_id (original COCO id), label (1..80), "
                      "bbox [x,y,w,h], area, iscrowd, rle {size:[h,w], counts}}]; no mask member",
            "source": f"{self.params.filelist} (19,817 train2014 images, the LOST/ZUTIS list) + instances_train2014.json",
            "coco_eval_json": SEL_NAME,
        }
        return SplitSpec(self.name, split, coco_id_table(), notes=notes)

    def records(self, split: str) -> Listing:
        p = self.params
        path = p.annotation_file(SPLIT)
        obj = load_instances(path)
        _, to_label = coco80_table()
        check_categories(obj, to_label, path)
        images = {int(i["id"]): i for i in obj["images"]}
        anns = group_annotations(obj, _KEEP)
        folder = p.image_dir(SPLIT)
        out: list[Record[Any]] = []
        found = 0
        for entry in read_filelist(p.filelist):
            iid = image_id_of(entry)
            name = Path(entry).name
            file = under_root(folder, name)
            img = images.get(iid)
            if file is None:
                out.append(outside_root(Path(name).stem, folder, name))
            elif img is None:
                out.append(problem(Path(name).stem, file, "missing_annotation", f"image id {iid} not in {path.name}"))
            else:
                found += 1
                f = input_file(file)
                payload = CocoImage(file, iid, int(img["height"]), int(img["width"]), anns.get(iid, ()))
                out.append(Record(Path(name).stem, payload, max(f.size, 0), (f,)))
        return Listing(out, totals_notes(EXPECTED.get(split), found))

    def load(self, record: Record[CocoImage]) -> Sample:
        img = record.payload
        assert isinstance(img, CocoImage)
        data = read_input(img.path)
        w, h = check_dims(data, img)
        _, to_label = coco80_table()
        instances = []
        for ann in img.anns:
            cat = int(ann["category_id"])
            if cat not in to_label:
                raise SampleError("unknown_label", f"{img.path}: annotation {ann.get('id')} has category {cat}")
            rle = masks.to_rle(ann["segmentation"], h, w, f"{img.path} ann {ann.get('id')}")
            instances.append({
                "id": int(ann["id"]), "category_id": cat, "label": to_label[cat],
                "bbox": [float(v) for v in ann.get("bbox", [])], "area": float(ann.get("area", 0.0)),
                "iscrowd": int(ann.get("iscrowd", 0)), "rle": masks.rle_json(rle),
            })
        meta = {"image_id": img.image_id, "file_name": Path(img.path).name, "width": w, "height": h,
                "instances": instances}
        return Sample(record.key, data, meta=meta, origin=img.path)

    def extra_files(self, split: str) -> dict[str, bytes]:
        """The filtered instances JSON COCOeval needs, written beside the split's shards."""
        return {SEL_NAME: sel20k_bytes(self.params)}


def sel20k(params: CocoParams) -> dict[str, Any]:
    """The instances JSON filtered to the listed images (categories and info whole)."""
    ids = {image_id_of(e) for e in read_filelist(params.filelist)}
    obj = load_instances(params.annotation_file(SPLIT))
    sel = {k: v for k, v in obj.items() if k not in ("images", "annotations")}
    sel["images"] = [i for i in obj["images"] if int(i["id"]) in ids]
    sel["annotations"] = [a for a in obj["annotations"] if int(a["image_id"]) in ids]
    return sel


def sel20k_bytes(params: CocoParams) -> bytes:
    return json.dumps(sel20k(params), separators=(",", ":")).encode()


def report_20k(build_report: Any, params: CocoParams) -> str:
    """Totals against 19,817, and where the evaluation JSON went."""
    text = totals_report(build_report, EXPECTED, "COCO-20K instances")
    sel = sel20k(params)
    where = f"{str(build_report.out).rstrip('/')}/{SPLIT}/{SEL_NAME}"
    return f"{text}\n  wrote {where} ({len(sel['images']):,} images, {len(sel['annotations']):,} annotations) for COCOeval"
