"""Image folders as shards: class folders (ImageNet-1k/21K, LarvSeg's I22K) and plain trees (PASS).

``mode=classes``: ``root/<wnid>/<image>`` gives image + ``cls`` (class index) + ``wnid`` in the
json member, no mask (turning the index into a constant map is the loader's job). The class
list is a manifest/file (``.json`` dict ``wnid -> name`` in index order, or ``.txt`` with one
``wnid [name]`` per line) or, when empty, the sorted folder names; it is recorded in the
index. ``ids`` optionally restricts to a LarvSeg split file of ``<wnid>_<n>`` stems.
``mode=plain``: every image under ``root``, image only. Keys are relative paths without the
extension, so they are stable across machines. Folders are listed a few at a time on threads,
so a 100M-image tree streams.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Iterator, NamedTuple

from .. import catalog
from ..errors import InputError
from ..io import read_json_file
from ..shards.spec import ClassEntry, ClassTable, SplitSpec
from .base import InputFile, Listing, Record, Sample
from .common import input_file, outside_root, read_input, scan_tree, totals_notes, totals_report, under_root
from .params import parse_params

LISTED = 50


@dataclass(frozen=True)
class FolderParams:
    src: str = ""
    mode: str = "classes"
    dataset: str = "imagefolder"
    split: str = "train"
    class_list: str = ""
    ids: str = ""
    id_ext: str = ".JPEG"
    unlisted: str = "skip"
    expected: int = 0
    splits: tuple[str, ...] = ()

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"mode": ("classes", "plain"), "unlisted": ("skip", "error")}
    REQUIRED: ClassVar[dict[str, str]] = {"src": "no image folder given (pass --src DIR or -p src=DIR)"}

    def __post_init__(self) -> None:
        if self.splits and self.splits != (self.split,):
            raise InputError(f"imagefolder: this source has the single split {self.split!r} (set split=NAME to rename it)")
        if self.expected < 0:
            raise InputError("imagefolder: expected must be >= 0 (0 = no published total)")
        if self.mode == "plain" and (self.class_list or self.ids):
            raise InputError("imagefolder: class_list and ids only apply to mode=classes")
        if not Path(self.src).is_dir():
            raise InputError(f"image folder not found: {self.src}")


class FolderImage(NamedTuple):
    """An image of a folder source: its path, and the class index and wnid in class mode."""

    path: str
    rel: str
    cls: int | None = None
    wnid: str | None = None


def key_of(rel: str) -> str:
    """The sample key of a relative path: the path without its extension, folders joined by ``_``
    (what the build's key rule makes of it anyway; giving it ready saves a copy of every record)."""
    dot = rel.rfind(".")
    return (rel[:dot] if dot > rel.rfind("/") + 1 else rel).replace("/", "_")


def _resolve(spec: str) -> Path:
    path = Path(spec)
    return path if path.is_file() else catalog.manifest(spec)


def read_class_list(spec: str) -> list[tuple[str, str]]:
    """``(wnid, name)`` pairs in class-index order from a ``.json`` dict or a ``.txt`` list."""
    path = _resolve(spec)
    if path.suffix == ".json":
        obj = read_json_file(path, "class list")
        if isinstance(obj, dict):
            pairs = [(str(k), str(v)) for k, v in obj.items()]
        elif isinstance(obj, list):
            pairs = [(str(k), str(k)) for k in obj]
        else:
            raise InputError(f"{path}: expected a wnid -> name object or a list of wnids")
    else:
        pairs = []
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.strip().split(maxsplit=1)
            if parts:
                pairs.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    wnids = [w for w, _ in pairs]
    if not pairs or len(set(wnids)) != len(wnids):
        raise InputError(f"{path}: class list is empty or repeats a wnid")
    return pairs


def class_folders(src: str) -> list[str]:
    """The visible sub-folders of ``src``, sorted."""
    return sorted(e.name for e in os.scandir(src) if e.is_dir() and not e.name.startswith("."))


@lru_cache(maxsize=4)
def class_pairs(src: str, class_list: str) -> tuple[tuple[str, str], ...]:
    """The ``(wnid, name)`` list of a source (a pure function of its parameters and folders)."""
    if class_list:
        return tuple(read_class_list(class_list))
    names = class_folders(src)
    if not names:
        raise InputError(f"{src}: no class folders found")
    return tuple((n, n) for n in names)


def _read_ids(spec: str) -> list[str]:
    return [ln.split()[0] for ln in _resolve(spec).read_text(encoding="utf-8").splitlines() if ln.strip()]


@dataclass(frozen=True)
class ClassFolderSource:
    """``root/<wnid>/<image>`` with an image-level class index; see the module docstring."""

    params: FolderParams

    @property
    def name(self) -> str:
        return self.params.dataset

    @property
    def classes(self) -> tuple[tuple[str, str], ...]:
        return class_pairs(self.params.src, self.params.class_list)

    def roots(self) -> tuple[str, ...]:
        return (self.params.src,)

    def splits(self) -> list[str]:
        return [self.params.split]

    def spec(self, split: str) -> SplitSpec:
        table = ClassTable(tuple(ClassEntry(i, name, {"wnid": wnid}) for i, (wnid, name) in enumerate(self.classes)))
        notes = {
            "labels": "image-level: 'cls' = class index (position in the class list), 'wnid' in json; no mask",
            "class_list": self.params.class_list or "sorted folder names",
            **totals_notes(self.params.expected or None, None),
        }
        return SplitSpec(self.name, split, table, cls=True, notes=notes)

    def records(self, split: str) -> Listing:
        p = self.params
        index = {wnid: i for i, (wnid, _) in enumerate(self.classes)}
        folders = class_folders(p.src)
        unlisted = [f for f in folders if f not in index]
        if unlisted and p.unlisted == "error":
            raise InputError(f"{p.src}: {len(unlisted)} folder(s) not in the class list, e.g. {unlisted[:3]}")
        present = set(folders)
        missing = [w for w, _ in self.classes if w not in present]
        facts: dict[str, Any] = {"skipped_folders": {"count": len(unlisted), "first": unlisted[:LISTED]},
                                 "classes_without_folder": {"count": len(missing), "first": missing[:LISTED]}}
        found = self._by_ids(index) if p.ids else self._by_folders(index, present)
        return Listing(_counted(found, facts, p.expected or None), facts)

    def _by_ids(self, index: dict[str, int]) -> Iterator[Record[Any]]:
        p = self.params
        for stem in _read_ids(p.ids):
            wnid = stem[: stem.find("_")] if "_" in stem else stem
            if wnid not in index:
                raise InputError(f"{p.ids}: {stem!r} belongs to {wnid!r}, which is not in the class list")
            rel = f"{wnid}/{stem}{p.id_ext}"
            path = under_root(p.src, rel)
            if path is None:
                yield outside_root(f"{wnid}_{stem}", p.src, rel)
                continue
            f = input_file(path)
            yield Record(f"{wnid}_{stem}", FolderImage(f.path, rel, index[wnid], wnid), max(f.size, 0), (f,))

    def _by_folders(self, index: dict[str, int], present: set[str]) -> Iterator[Record[Any]]:
        src = self.params.src
        for wnid, _ in self.classes:
            if wnid not in present:
                continue
            folder = under_root(src, wnid)
            if folder is None:
                yield outside_root(wnid, src, wnid)
                continue
            cut, cls = len(folder) - len(wnid), index[wnid]  # paths under folder start with src + "/"
            for f in scan_tree(folder):
                rel = f.path[cut:]
                yield Record(key_of(rel), FolderImage(f.path, rel, cls, wnid), f.size, (f,))

    def load(self, record: Record[FolderImage]) -> Sample:
        img = record.payload
        assert isinstance(img, FolderImage)
        return Sample(record.key, read_input(img.path), cls=img.cls, meta={"wnid": img.wnid, "path": img.rel}, origin=img.path)


@dataclass(frozen=True)
class PlainFolderSource:
    """Every image under ``root`` (PASS and friends): image + json with the relative path."""

    params: FolderParams

    @property
    def name(self) -> str:
        return self.params.dataset

    def roots(self) -> tuple[str, ...]:
        return (self.params.src,)

    def splits(self) -> list[str]:
        return [self.params.split]

    def spec(self, split: str) -> SplitSpec:
        notes = {"labels": "none (image only)", "keys": "relative path without extension",
                 **totals_notes(self.params.expected or None, None)}
        return SplitSpec(self.name, split, None, notes=notes)

    def records(self, split: str) -> Listing:
        src = self.params.src
        facts: dict[str, Any] = {}
        found = (_plain(src, f) for f in scan_tree(src))
        return Listing(_counted(found, facts, self.params.expected or None), facts)

    def load(self, record: Record[FolderImage]) -> Sample:
        img = record.payload
        assert isinstance(img, FolderImage)
        return Sample(record.key, read_input(img.path), meta={"path": img.rel}, origin=img.path)


def _plain(src: str, f: InputFile) -> Record[Any]:
    rel = f.path[len(src.rstrip(os.sep)) + 1:] if f.path.startswith(src.rstrip(os.sep) + os.sep) else os.path.relpath(f.path, src)
    return Record(key_of(rel), FolderImage(f.path, rel), f.size, (f,))


def _counted(records: Iterator[Record[Any]], facts: dict[str, Any], expected: int | None) -> Iterator[Record[Any]]:
    """Pass records through, then put the found count (and shortfall) into ``facts``."""
    n = 0
    for rec in records:
        n += 1
        yield rec
    facts.update(totals_notes(expected, n))


def make_source(params: dict[str, Any]) -> ClassFolderSource | PlainFolderSource:
    p = parse_params(FolderParams, params, "imagefolder")
    if p.mode == "plain":
        return PlainFolderSource(p)
    class_pairs(p.src, p.class_list)  # a bad class list fails now, not in the middle of a build
    return ClassFolderSource(p)


def folder_source(root: str | Path, dataset: str = "folder", classes: bool = False,
                  split: str = "train") -> ClassFolderSource | PlainFolderSource:
    """The programmatic form: ``classes=True`` reads ``root/<class>/<image>``, else every image under root."""
    return make_source({"src": str(root), "dataset": dataset, "split": split, "mode": "classes" if classes else "plain"})


def report(build_report: Any, params: dict[str, Any]) -> str:
    p = parse_params(FolderParams, params, "imagefolder")
    expected = {p.split: p.expected} if p.expected else {}
    return totals_report(build_report, expected, f"{p.dataset} ({p.mode} folders)")
