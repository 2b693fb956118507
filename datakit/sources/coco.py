"""COCO converters: 80-thing semantic maps from instances JSON, COCO-Stuff 171, COCO-20K instances.

``make_source({"kind": ...})`` picks one: ``semantic80`` (0 background, 1..80 things by rank of
the COCO id, 255 ignore, rasterised with pycocotools), ``stuff171`` (stuffthingmaps PNGs
remapped to mmseg's 0..170 trainIds) or ``instances20k`` (see ``coco20k``). Records carry each
image's annotations so workers never reload the JSON.
"""

from __future__ import annotations

import json
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import catalog
from ..errors import InputError, SampleError
from ..sample import Record, Sample
from ..shards.spec import ClassEntry, ClassTable, MaskMember, SplitSpec
from . import coco_masks
from .common import (apply_lut, check_size, file_size, first_dir, image_dims, list_stems, parse_params,
                     problem_record, raise_problem, read_bytes, read_index_map, totals_notes, totals_report)

IGNORE = 255
EXPECTED = {"semantic80": {"train": 118_287, "val": 5_000}, "stuff171": {"train": 118_287, "val": 5_000}}
ORDERS = ("area_desc", "file")
CROWD = ("ignore", "class", "skip")


@dataclass(frozen=True)
class CocoParams:
    """Recipe params shared by the COCO kinds (``images``/``annotations``/``maps`` override the layout)."""

    src: str = ""
    kind: str = "semantic80"
    splits: tuple[str, ...] = ()
    year: str = ""
    order: str = "area_desc"
    crowd: str = "ignore"
    images: str = ""
    annotations: str = ""
    maps: str = ""
    filelist: str = "zutis/coco_20k_filenames.txt"

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "kind": ("semantic80", "stuff171", "instances20k"), "order": ORDERS, "crowd": CROWD,
        "splits": ("train", "val"),
    }

    @property
    def yr(self) -> str:
        """The release year: given, else 2014 for COCO-20K (a train2014 subset) and 2017 otherwise."""
        return self.year or ("2014" if self.kind == "instances20k" else "2017")

    def image_dir(self, split: str) -> Path:
        if self.images:
            return Path(self.images.format(split=split, year=self.yr))
        return first_dir(Path(self.src), [f"{split}{self.yr}", f"images/{split}{self.yr}"], f"COCO {split} images")

    def annotation_file(self, split: str) -> Path:
        if self.annotations:
            return Path(self.annotations.format(split=split, year=self.yr))
        return Path(self.src) / "annotations" / f"instances_{split}{self.yr}.json"


@lru_cache(maxsize=1)
def coco80_table() -> tuple[ClassTable, dict[int, int]]:
    """The 81-entry table (0 background) and the COCO id -> contiguous 1..80 map (rank + 1)."""
    rows = sorted(catalog.read_json("classes/coco80.json"), key=lambda r: r["coco_id"])  # type: ignore[arg-type]
    to_label = {int(r["coco_id"]): i + 1 for i, r in enumerate(rows)}
    entries = [ClassEntry(0, "background")]
    entries += [ClassEntry(to_label[int(r["coco_id"])], r["name"], {"coco_id": int(r["coco_id"])}) for r in rows]
    return ClassTable(tuple(entries), IGNORE), to_label


def load_instances(path: Path) -> dict[str, Any]:
    """An instances JSON, with a clear error for a missing or malformed file."""
    if not path.is_file():
        raise InputError(f"COCO annotations not found: {path}")
    try:
        with open(path, "rb") as f:
            obj = json.load(f)
        obj["images"], obj["annotations"], obj["categories"]
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: not a COCO instances file ({err})") from None
    return obj


def check_categories(obj: dict[str, Any], to_label: dict[int, int], path: Path) -> None:
    """The JSON's categories must be the standard 80 (ids and names are facts we rely on)."""
    ids = {int(c["id"]) for c in obj["categories"]}
    if not ids <= set(to_label):
        raise InputError(f"{path}: category ids {sorted(ids - set(to_label))} are not COCO's 80 thing ids")


def group_annotations(obj: dict[str, Any], keep: tuple[str, ...]) -> dict[int, list[dict[str, Any]]]:
    """Annotations by image id, each trimmed to the ``keep`` fields, in file order."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in obj["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append({k: ann[k] for k in keep if k in ann})
    return by_image


def paint_semantic(anns: list[dict[str, Any]], h: int, w: int, to_label: dict[int, int],
                   order: str, crowd: str, origin: str) -> tuple[np.ndarray, dict[str, int]]:
    """One label map from instance annotations.

    Crowd regions (``crowd='ignore'``) are painted first as 255 so that the instances inside them
    stay visible; the rest are painted largest first (``area_desc``: small objects win overlaps)
    or in file order (later wins). ``crowd='class'`` paints crowds like any instance.
    """
    layers: list[tuple[int, int, int, int, dict[str, Any]]] = []
    crowds = 0
    for pos, ann in enumerate(anns):
        cat = int(ann["category_id"])
        if cat not in to_label:
            raise SampleError("unknown_label", f"{origin}: annotation {ann.get('id')} has category {cat}")
        is_crowd = bool(ann.get("iscrowd", 0))
        crowds += is_crowd
        if is_crowd and crowd == "skip":
            continue
        rle = coco_masks.to_rle(ann["segmentation"], h, w, f"{origin} ann {ann.get('id')}")
        value = IGNORE if is_crowd and crowd == "ignore" else to_label[cat]
        layer = 0 if is_crowd and crowd == "ignore" else 1
        rank = -coco_masks.area(rle) if order == "area_desc" else 0
        layers.append((layer, rank, pos, value, rle))
    # pycocotools decodes column-major; paint on a (w, h) canvas so no mask is copied.
    canvas = np.zeros((w, h), np.uint8)
    for _, _, _, value, rle in sorted(layers, key=lambda t: t[:3]):
        np.copyto(canvas, np.uint8(value), where=coco_masks.decode_t(rle))
    out = np.ascontiguousarray(canvas.T)
    return out, {"instances": len(anns), "crowd": crowds}


@dataclass
class CocoSemanticSource:
    """COCO-2017 semantic maps (0 background, 1..80 things, 255 ignore) painted from instances."""

    params: CocoParams
    name: str = "coco2017"
    _found: dict[str, int] = field(default_factory=dict)

    def splits(self) -> list[str]:
        return list(self.params.splits or ("train", "val"))

    def spec(self, split: str) -> SplitSpec:
        table, _ = coco80_table()
        p = self.params
        notes = {
            "labels": "0 background, 1..80 COCO things by rank of the COCO category id, 255 ignore",
            "source": f"instances_{split}{p.yr}.json rasterised with pycocotools (annToMask)",
            "painting_order": f"{p.order}: " + {
                "area_desc": "largest first, so smaller objects win overlaps (ties: file order)",
                "file": "annotation file order, later annotations win"}[p.order],
            "crowd": f"{p.crowd}: " + {
                "ignore": "crowd regions written as 255, painted under the other instances",
                "class": "crowd regions painted with their class like any instance",
                "skip": "crowd regions not painted"}[p.crowd],
            "images_without_annotations": "kept, all background",
            **totals_notes(EXPECTED["semantic80"].get(split), self._found.get(split)),
        }
        return SplitSpec(self.name, split, table, masks=(MaskMember("seg.png", 8, IGNORE),), notes=notes)

    def records(self, split: str) -> list[Record]:
        p = self.params
        folder = p.image_dir(split)
        path = p.annotation_file(split)
        obj = load_instances(path)
        _, to_label = coco80_table()
        check_categories(obj, to_label, path)
        anns = group_annotations(obj, ("id", "category_id", "iscrowd", "segmentation"))
        out: list[Record] = []
        listed = set()
        for img in sorted(obj["images"], key=lambda i: int(i["id"])):
            listed.add(img["file_name"])
            file = folder / img["file_name"]
            data = {"path": str(file), "id": int(img["id"]), "h": int(img["height"]), "w": int(img["width"]),
                    "anns": anns.get(int(img["id"]), [])}
            out.append(Record(Path(img["file_name"]).stem, data, file_size(file)))
        for stem, file in sorted(list_stems(folder, ".jpg").items()):
            if file.name not in listed:
                out.append(problem_record(stem, file, "missing_annotation", f"{file}: not in {path.name}"))
        self._found[split] = len(obj["images"])
        return out

    def load(self, record: Record) -> Sample:
        raise_problem(record)
        d = record.data
        data = read_bytes(d["path"])
        w, h = image_dims(data, d["path"])
        if (w, h) != (d["w"], d["h"]):
            raise SampleError("mask_size_mismatch", f"{d['path']}: file is {w}x{h}, annotations say {d['w']}x{d['h']}")
        _, to_label = coco80_table()
        mask, counts = paint_semantic(d["anns"], h, w, to_label, self.params.order, self.params.crowd, d["path"])
        meta = {"image_id": d["id"], "file_name": Path(d["path"]).name, **counts}
        return Sample(record.key, data, {"seg.png": mask}, meta=meta, origin=d["path"])


# COCO-Stuff: raw PNG value = COCO-Stuff id - 1; these 11 thing values never occur.
STUFF_DROPPED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)


@lru_cache(maxsize=1)
def stuff171_lut() -> np.ndarray:
    """Raw stuffthingmaps value -> trainId 0..170 (255 stays 255; anything else is unknown)."""
    lut = np.full(256, -1, np.int32)
    kept = [v for v in range(182) if v not in STUFF_DROPPED]
    lut[np.array(kept)] = np.arange(len(kept))
    lut[IGNORE] = IGNORE
    return lut


@lru_cache(maxsize=1)
def stuff171_table() -> ClassTable:
    rows = catalog.read_json("classes/coco_stuff171.json")
    entries = [ClassEntry(int(r["trainId"]), r["name"], {"coco_id": int(r["coco_id"]), "isthing": int(r["isthing"])})
               for r in rows]  # type: ignore[union-attr]
    return ClassTable(tuple(sorted(entries, key=lambda e: e.id)), IGNORE)


@dataclass
class CocoStuffSource:
    """COCO-Stuff 164k ``stuffthingmaps`` PNGs as 171-class trainId maps (mmseg's conversion)."""

    params: CocoParams
    name: str = "cocostuff171"
    _found: dict[str, int] = field(default_factory=dict)

    def splits(self) -> list[str]:
        return list(self.params.splits or ("train", "val"))

    def map_dir(self, split: str) -> Path:
        p = self.params
        if p.maps:
            return Path(p.maps.format(split=split, year=p.yr))
        y = p.yr
        return first_dir(Path(p.src), [f"stuffthingmaps_trainval{y}/{split}{y}", f"annotations/{split}{y}",
                                       f"stuffthingmaps/{split}{y}"], f"COCO-Stuff {split} maps")

    def spec(self, split: str) -> SplitSpec:
        notes = {
            "labels": "trainIds 0..170 (COCO-Stuff value minus the 11 unused thing ids, in order), 255 unlabeled",
            "source": "stuffthingmaps PNG value = COCO-Stuff id - 1; same maps as mmseg's coco_stuff164k converter",
            **totals_notes(EXPECTED["stuff171"].get(split), self._found.get(split)),
        }
        return SplitSpec(self.name, split, stuff171_table(), masks=(MaskMember("seg.png", 8, IGNORE),), notes=notes)

    def records(self, split: str) -> list[Record]:
        images = list_stems(self.params.image_dir(split), ".jpg")
        maps = list_stems(self.map_dir(split), ".png")
        out = []
        for stem in sorted(set(images) | set(maps)):
            if stem not in maps:
                out.append(problem_record(stem, images[stem], "missing_mask", f"{images[stem]}: no stuffthingmaps PNG"))
            elif stem not in images:
                out.append(problem_record(stem, maps[stem], "missing_image", f"{maps[stem]}: no image"))
            else:
                out.append(Record(stem, {"path": str(images[stem]), "map": str(maps[stem])}, file_size(images[stem])))
        self._found[split] = len(maps)
        return out

    def load(self, record: Record) -> Sample:
        raise_problem(record)
        path = record.data["path"]
        data = read_bytes(path)
        raw = read_index_map(Path(record.data["map"]))
        check_size(raw, image_dims(data, path), record.data["map"])
        mask = apply_lut(raw, stuff171_lut(), record.data["map"]).astype(np.uint8)
        return Sample(record.key, data, {"seg.png": mask}, meta={"file_name": Path(path).name}, origin=path)


# Params that only mean something for some kinds; giving one to another kind is an error.
APPLIES = {"order": ("semantic80",), "crowd": ("semantic80",), "maps": ("stuff171",), "filelist": ("instances20k",)}


def make_source(params: dict[str, Any]):
    """The recipe entry point: validate params and build the source for ``kind``."""
    p = parse_params(CocoParams, params, "coco")
    wrong = sorted(k for k, kinds in APPLIES.items() if k in params and p.kind not in kinds)
    if wrong:
        raise InputError(f"coco: parameter(s) {wrong} do not apply to kind={p.kind}")
    if p.kind == "instances20k" and p.splits and p.splits != ("train",):
        raise InputError("coco: COCO-20K has the single split 'train'")
    if p.kind == "semantic80":
        return CocoSemanticSource(p)
    if p.kind == "stuff171":
        return CocoStuffSource(p)
    from .coco20k import Coco20kSource

    return Coco20kSource(p)


def report(build_report: Any, params: dict[str, Any]) -> str:
    """Post-build summary: totals against the published counts (and, for COCO-20K, the eval JSON)."""
    p = parse_params(CocoParams, params, "coco")
    if p.kind == "instances20k":
        from .coco20k import report_20k

        return report_20k(build_report, p)
    return totals_report(build_report, EXPECTED[p.kind], f"COCO {p.kind}")
