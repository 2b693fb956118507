"""COCO-Stuff 164k ``stuffthingmaps`` PNGs as 171-class trainId maps (mmseg's conversion)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ... import catalog
from ...shards.spec import ClassEntry, ClassTable, MaskMember, SplitSpec
from ..base import Listing, Record, Sample
from ..common import (apply_lut, check_size, first_dir, image_dims, list_stems, problem, read_input, read_index_map,
                      totals_notes)
from .params import EXPECTED, IGNORE, CocoParams

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
    rows = catalog.manifest_json("classes/coco_stuff171.json")
    entries = [ClassEntry(int(r["trainId"]), r["name"], {"coco_id": int(r["coco_id"]), "isthing": int(r["isthing"])})
               for r in rows]  # type: ignore[union-attr]
    return ClassTable(tuple(sorted(entries, key=lambda e: e.id)), IGNORE)


@dataclass(frozen=True, slots=True)
class StuffPair:
    path: str
    map: str


@dataclass(frozen=True)
class CocoStuffSource:
    """COCO-Stuff 164k ``stuffthingmaps`` PNGs as 171-class trainId maps (mmseg's conversion)."""

    params: CocoParams
    name: str = "cocostuff171"

    def roots(self) -> tuple[str, ...]:
        return self.params.roots()

    def splits(self) -> list[str]:
        return self.params.splits_present()

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
        }
        return SplitSpec(self.name, split, stuff171_table(), masks=(MaskMember("seg.png", 8, IGNORE),), notes=notes)

    def records(self, split: str) -> Listing:
        images = list_stems(self.params.image_dir(split), ".jpg")
        maps = list_stems(self.map_dir(split), ".png")
        out: list[Record[Any]] = []
        for stem in sorted(set(images) | set(maps)):
            if stem not in maps:
                out.append(problem(stem, images[stem].path, "missing_mask", f"{images[stem].path}: no stuffthingmaps PNG"))
            elif stem not in images:
                out.append(problem(stem, maps[stem].path, "missing_image", f"{maps[stem].path}: no image"))
            else:
                img, lab = images[stem], maps[stem]
                out.append(Record(stem, StuffPair(img.path, lab.path), img.size, (img, lab)))
        return Listing(out, totals_notes(EXPECTED["stuff171"].get(split), len(maps)))

    def load(self, record: Record[StuffPair]) -> Sample:
        pair = record.payload
        assert isinstance(pair, StuffPair)
        data = read_input(pair.path)
        raw = read_index_map(Path(pair.map))
        check_size(raw, image_dims(data, pair.path), pair.map)
        mask = apply_lut(raw, stuff171_lut(), pair.map).astype(np.uint8)
        return Sample(record.key, data, {"seg.png": mask}, meta={"file_name": Path(pair.path).name}, origin=pair.path)
