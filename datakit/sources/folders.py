"""Plain image folders, the minimal source: class folders or a loose tree, nothing configurable.

The recipe-facing converters (`imagefolder`, `imagenet21k`, `pass`) live in ``imagefolder.py`` with
manifests, LarvSeg id lists and totals; this one is the small programmatic source that benchmarks,
tests and the CLIP index use. Both read files through the same failure reasons.

Class-folder mode gives each image ``cls`` (its class index) and ``wnid``; the class list comes
from a manifest file or the sorted folder names and is recorded in the index. Keys are the
relative path without extension, so they are stable across machines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import InputError, SampleError
from ..sample import Record, Sample
from ..shards.spec import ClassTable, SplitSpec

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def read_file(path: str) -> bytes:
    """A sample file's bytes with the same failure reasons as every converter (``common.read_bytes``)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise SampleError("missing_image", path) from None
    except OSError as err:
        raise SampleError("unreadable_file", f"{path}: {err.strerror or err}") from None


def scan_images(root: Path) -> list[str]:
    """Relative paths of every image under root, sorted (deterministic across file systems)."""
    if not root.is_dir():
        raise InputError(f"image folder not found: {root}")
    found = []
    base = str(root).rstrip("/") + "/"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        prefix = (dirpath + "/")[len(base):]
        for name in filenames:
            if os.path.splitext(name)[1].lower() in IMAGE_EXTS:
                found.append(prefix + name)
    return sorted(found)


def key_of(relpath: str) -> str:
    return os.path.splitext(relpath)[0]


@dataclass
class FolderSource:
    """``classes=True``: ``root/<class>/<image>``; ``classes=False``: every image under root."""

    root: str
    dataset: str = "folder"
    split_name: str = "train"
    classes: bool = False
    class_names: tuple[str, ...] | None = None
    name: str = "folder"

    def __post_init__(self) -> None:
        self.name = self.dataset
        if not Path(self.root).is_dir():
            raise InputError(f"image folder not found: {self.root}")
        if self.classes and self.class_names is None:
            names = sorted(d.name for d in Path(self.root).iterdir() if d.is_dir() and not d.name.startswith("."))
            if not names:
                raise InputError(f"{self.root}: no class folders found")
            self.class_names = tuple(names)

    def splits(self) -> Sequence[str]:
        return [self.split_name]

    def spec(self, split: str) -> SplitSpec:
        table = ClassTable.from_names(list(self.class_names)) if self.classes and self.class_names else None
        notes = {"labels": "image-level class index in 'cls', wnid in json"} if self.classes else {}
        return SplitSpec(self.dataset, split, classes=table, cls=self.classes, notes=notes)

    def records(self, split: str) -> list[Record]:
        root = Path(self.root)
        if not self.classes:
            return [Record(key_of(p), {"path": str(root / p), "rel": p}, _size(root / p)) for p in scan_images(root)]
        index = {n: i for i, n in enumerate(self.class_names or ())}
        out = []
        for name in self.class_names or ():
            folder = root / name
            if not folder.is_dir():
                raise InputError(f"{self.root}: class folder {name!r} from the class list is missing")
            for rel in scan_images(folder):
                out.append(Record(key_of(f"{name}/{rel}"), {"path": str(folder / rel), "rel": f"{name}/{rel}", "cls": index[name], "wnid": name},
                                  _size(folder / rel)))
        return out

    def load(self, record: Record) -> Sample:
        path = record.data["path"]
        meta = {"path": record.data["rel"]}
        if self.classes:
            meta["wnid"] = record.data["wnid"]
        return Sample(record.key, read_file(path), cls=record.data.get("cls"), meta=meta, origin=path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
