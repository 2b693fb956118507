"""What the COCO converters share: their parameters, the 80-class table and the instances JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from ... import catalog
from ...errors import InputError
from ...shards.spec import ClassEntry, ClassTable
from ..common import first_dir, present_splits

IGNORE = 255
EXPECTED = {"semantic80": {"train": 118_287, "val": 5_000}, "stuff171": {"train": 118_287, "val": 5_000}}
ORDERS = ("area_desc", "file")
CROWD = ("ignore", "class", "skip")
# Params that only mean something for some kinds; giving one to another kind is an error.
APPLIES = {"order": ("semantic80",), "crowd": ("semantic80",), "maps": ("stuff171",), "filelist": ("instances20k",)}


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
    REQUIRED: ClassVar[dict[str, str]] = {"src": "no dataset root given (pass --src DIR or -p src=DIR)"}

    def __post_init__(self) -> None:
        if self.kind == "instances20k" and self.splits and self.splits != ("train",):
            raise InputError("coco: COCO-20K has the single split 'train'")

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

    def splits_present(self) -> list[str]:
        """The chosen splits, or by default those of train/val whose image folder exists."""
        if self.splits:
            return list(self.splits)
        found: dict[str, str | None] = {}
        for split in ("train", "val"):
            try:
                self.image_dir(split)
                found[split] = None
            except InputError as err:
                found[split] = str(err)
        return present_splits(f"coco {self.kind}", found, "pass --src the COCO root or --split to choose")

    def roots(self) -> tuple[str, ...]:
        extra = [str(Path(t).parent) for t in (self.images, self.annotations, self.maps) if t]
        return (self.src, *extra)


def check_applicable(p: CocoParams, given: dict[str, Any]) -> None:
    """Refuse parameters that do not apply to the chosen kind."""
    wrong = sorted(k for k, kinds in APPLIES.items() if k in given and p.kind not in kinds)
    if wrong:
        raise InputError(f"coco: parameter(s) {wrong} do not apply to kind={p.kind}")


@lru_cache(maxsize=1)
def coco80_table() -> tuple[ClassTable, dict[int, int]]:
    """The 81-entry table (0 background) and the COCO id -> contiguous 1..80 map (rank + 1)."""
    rows = sorted(catalog.manifest_json("classes/coco80.json"), key=lambda r: r["coco_id"])  # type: ignore[arg-type]
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


def group_annotations(obj: dict[str, Any], keep: tuple[str, ...]) -> dict[int, tuple[dict[str, Any], ...]]:
    """Annotations by image id, each trimmed to the ``keep`` fields, in file order."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in obj["annotations"]:
        by_image.setdefault(int(ann["image_id"]), []).append({k: ann[k] for k in keep if k in ann})
    return {k: tuple(v) for k, v in by_image.items()}


@dataclass(frozen=True, slots=True)
class CocoImage:
    """One COCO image and its annotations (carried in the record so workers never reload the JSON)."""

    path: str
    image_id: int
    height: int
    width: int
    anns: tuple[dict[str, Any], ...] = ()
