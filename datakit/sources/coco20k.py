"""COCO-20K (LOST/ZUTIS): the 19,817 listed train2014 images with their instances, for mask AP.

Each sample stores the image and, in its ``json`` member, every instance as a compressed RLE
(pycocotools form) with the original COCO ``category_id``, its contiguous ``label`` (1..80),
``bbox`` [x, y, w, h], ``area`` and ``iscrowd``. After the build, ``report`` also writes
``instances_train2014_sel20k.json`` (images and annotations filtered to the list, categories
whole) next to the shards, which is what COCOeval needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import catalog
from ..errors import InputError, SampleError
from ..sample import Record, Sample
from ..shards.spec import ClassEntry, ClassTable, SplitSpec
from ..shards.writer import atomic_write_bytes
from . import coco_masks
from .coco import CocoParams, check_categories, coco80_table, group_annotations, load_instances
from .common import file_size, image_dims, problem_record, raise_problem, read_bytes, totals_notes, totals_report

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


def coco_id_table() -> ClassTable:
    """The 80 thing classes under their original COCO ids (instances keep those ids)."""
    _, to_label = coco80_table()
    rows = catalog.read_json("classes/coco80.json")
    entries = [ClassEntry(int(r["coco_id"]), r["name"], {"label": to_label[int(r["coco_id"])]}) for r in rows]  # type: ignore[union-attr]
    return ClassTable(tuple(sorted(entries, key=lambda e: e.id)), None)


@dataclass
class Coco20kSource:
    """COCO-20K: image + per-instance RLE masks, ids, boxes and crowd flags in the json member."""

    params: CocoParams
    name: str = "coco20k"
    _found: dict[str, int] = field(default_factory=dict)

    def splits(self) -> list[str]:
        return [SPLIT]

    def spec(self, split: str) -> SplitSpec:
        notes = {
            "labels": "instance-level: json 'instances' = [{id, category_id (original COCO id), label (1..80), "
                      "bbox [x,y,w,h], area, iscrowd, rle {size:[h,w], counts}}]; no mask member",
            "source": f"{self.params.filelist} (19,817 train2014 images, the LOST/ZUTIS list) + instances_train2014.json",
            "coco_eval_json": SEL_NAME,
            **totals_notes(EXPECTED.get(split), self._found.get(split)),
        }
        return SplitSpec(self.name, split, coco_id_table(), notes=notes)

    def records(self, split: str) -> list[Record]:
        p = self.params
        entries = read_filelist(p.filelist)
        path = p.annotation_file(SPLIT)
        obj = load_instances(path)
        _, to_label = coco80_table()
        check_categories(obj, to_label, path)
        images = {int(i["id"]): i for i in obj["images"]}
        anns = group_annotations(obj, _KEEP)
        folder = p.image_dir(SPLIT)
        out: list[Record] = []
        found = 0
        for entry in entries:
            iid = image_id_of(entry)
            file = folder / Path(entry).name
            img = images.get(iid)
            if img is None:
                out.append(problem_record(file.stem, file, "missing_annotation", f"image id {iid} not in {path.name}"))
                continue
            found += 1
            data = {"path": str(file), "id": iid, "h": int(img["height"]), "w": int(img["width"]),
                    "anns": anns.get(iid, [])}
            out.append(Record(file.stem, data, file_size(file)))
        self._found[split] = found
        return out

    def load(self, record: Record) -> Sample:
        raise_problem(record)
        d = record.data
        data = read_bytes(d["path"])
        w, h = image_dims(data, d["path"])
        if (w, h) != (d["w"], d["h"]):
            raise SampleError("mask_size_mismatch", f"{d['path']}: file is {w}x{h}, annotations say {d['w']}x{d['h']}")
        _, to_label = coco80_table()
        instances = []
        for ann in d["anns"]:
            cat = int(ann["category_id"])
            if cat not in to_label:
                raise SampleError("unknown_label", f"{d['path']}: annotation {ann.get('id')} has category {cat}")
            rle = coco_masks.to_rle(ann["segmentation"], h, w, f"{d['path']} ann {ann.get('id')}")
            instances.append({
                "id": int(ann["id"]), "category_id": cat, "label": to_label[cat],
                "bbox": [float(v) for v in ann.get("bbox", [])], "area": float(ann.get("area", 0.0)),
                "iscrowd": int(ann.get("iscrowd", 0)), "rle": coco_masks.rle_json(rle),
            })
        meta = {"image_id": d["id"], "file_name": Path(d["path"]).name, "width": w, "height": h,
                "instances": instances}
        return Sample(record.key, data, meta=meta, origin=d["path"])


def write_sel20k(params: CocoParams, directory: str | Path) -> tuple[Path, int, int]:
    """Write the filtered instances JSON for COCOeval; returns (path, images, annotations)."""
    ids = {image_id_of(e) for e in read_filelist(params.filelist)}
    obj = load_instances(params.annotation_file(SPLIT))
    sel = {k: v for k, v in obj.items() if k not in ("images", "annotations")}
    sel["images"] = [i for i in obj["images"] if int(i["id"]) in ids]
    sel["annotations"] = [a for a in obj["annotations"] if int(a["image_id"]) in ids]
    path = Path(directory) / SEL_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(sel, separators=(",", ":")).encode())
    return path, len(sel["images"]), len(sel["annotations"])


def report_20k(build_report: Any, params: CocoParams) -> str:
    """Totals against 19,817, then the filtered evaluation JSON written beside the shards."""
    text = totals_report(build_report, EXPECTED, "COCO-20K instances")
    path, n_img, n_ann = write_sel20k(params, Path(build_report.out) / SPLIT)
    return f"{text}\n  wrote {path} ({n_img:,} images, {n_ann:,} annotations) for COCOeval"
