"""Image folders as shards: class folders (ImageNet-1k/21K, LarvSeg's I22K) and plain trees (PASS).

``mode=classes``: ``root/<wnid>/<image>`` gives image + ``cls`` (class index) + ``wnid`` in the
json member, no mask (turning the index into a constant map is the loader's job). The class
list is a manifest/file (``.json`` dict ``wnid -> name`` in index order, or ``.txt`` with one
``wnid [name]`` per line) or, when empty, the sorted folder names; it is recorded in the
index. ``ids`` optionally restricts to a LarvSeg split file of ``<wnid>_<n>`` stems.
``mode=plain``: every image under ``root``, image only. Keys are relative paths without the
extension, so they are stable across machines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from .. import catalog
from ..errors import InputError
from ..remote import read_json_file
from ..sample import Record, Sample
from ..shards.spec import ClassEntry, ClassTable, SplitSpec
from .common import file_size, parse_params, raise_problem, read_bytes, totals_notes, totals_report
from .folders import key_of, scan_images

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


@lru_cache(maxsize=4)
def class_pairs(src: str, class_list: str) -> tuple[tuple[str, str], ...]:
    """The ``(wnid, name)`` list of a source, computed once per process (sources stay small to pickle)."""
    if class_list:
        return tuple(read_class_list(class_list))
    names = sorted(d.name for d in Path(src).iterdir() if d.is_dir())
    if not names:
        raise InputError(f"{src}: no class folders found")
    return tuple((n, n) for n in names)


@dataclass
class ClassFolderSource:
    """``root/<wnid>/<image>`` with an image-level class index; see the module docstring."""

    params: FolderParams
    name: str = "imagefolder"
    _notes: dict[str, Any] = field(default_factory=dict)
    _found: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.params.dataset
        if not Path(self.params.src).is_dir():
            raise InputError(f"image folder not found: {self.params.src}")
        class_pairs(self.params.src, self.params.class_list)

    @property
    def classes(self) -> tuple[tuple[str, str], ...]:
        return class_pairs(self.params.src, self.params.class_list)

    def splits(self) -> list[str]:
        return [self.params.split]

    def spec(self, split: str) -> SplitSpec:
        table = ClassTable(tuple(ClassEntry(i, name, {"wnid": wnid}) for i, (wnid, name) in enumerate(self.classes)))
        notes = {
            "labels": "image-level: 'cls' = class index (position in the class list), 'wnid' in json; no mask",
            "class_list": self.params.class_list or "sorted folder names",
            **self._notes,
            **totals_notes(self.params.expected or None, self._found.get(split)),
        }
        return SplitSpec(self.name, split, table, cls=True, notes=notes)

    def records(self, split: str) -> list[Record]:
        p = self.params
        root = Path(p.src)
        index = {wnid: i for i, (wnid, _) in enumerate(self.classes)}
        folders = sorted(d.name for d in root.iterdir() if d.is_dir())
        unlisted = [f for f in folders if f not in index]
        if unlisted and p.unlisted == "error":
            raise InputError(f"{root}: {len(unlisted)} folder(s) not in the class list, e.g. {unlisted[:3]}")
        present = set(folders)
        missing = [w for w, _ in self.classes if w not in present]
        out: list[Record] = []
        if p.ids:
            for stem in _read_ids(p.ids):
                wnid = stem[: stem.find("_")] if "_" in stem else stem
                if wnid not in index:
                    raise InputError(f"{p.ids}: {stem!r} belongs to {wnid!r}, which is not in the class list")
                path = root / wnid / f"{stem}{p.id_ext}"
                out.append(Record(f"{wnid}/{stem}", {"path": str(path), "cls": index[wnid], "wnid": wnid}, file_size(path)))
        else:
            for wnid, _ in self.classes:
                if wnid in present:
                    for rel in scan_images(root / wnid):
                        path = root / wnid / rel
                        out.append(Record(key_of(f"{wnid}/{rel}"), {"path": str(path), "cls": index[wnid], "wnid": wnid},
                                          file_size(path)))
        self._found[split] = len(out)
        self._notes = {"skipped_folders": {"count": len(unlisted), "first": unlisted[:LISTED]},
                       "classes_without_folder": {"count": len(missing), "first": missing[:LISTED]}}
        return out

    def load(self, record: Record) -> Sample:
        raise_problem(record)
        path = record.data["path"]
        meta = {"wnid": record.data["wnid"], "path": str(Path(path).relative_to(self.params.src))}
        return Sample(record.key, read_bytes(path), cls=record.data["cls"], meta=meta, origin=path)


@dataclass
class PlainFolderSource:
    """Every image under ``root`` (PASS and friends): image + json with the relative path."""

    params: FolderParams
    name: str = "folder"
    _found: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.params.dataset
        if not Path(self.params.src).is_dir():
            raise InputError(f"image folder not found: {self.params.src}")

    def splits(self) -> list[str]:
        return [self.params.split]

    def spec(self, split: str) -> SplitSpec:
        notes = {"labels": "none (image only)", "keys": "relative path without extension",
                 **totals_notes(self.params.expected or None, self._found.get(split))}
        return SplitSpec(self.name, split, None, notes=notes)

    def records(self, split: str) -> list[Record]:
        root = Path(self.params.src)
        rels = scan_images(root)
        self._found[split] = len(rels)
        return [Record(key_of(rel), {"path": str(root / rel)}, file_size(root / rel)) for rel in rels]

    def load(self, record: Record) -> Sample:
        path = record.data["path"]
        return Sample(record.key, read_bytes(path), meta={"path": str(Path(path).relative_to(self.params.src))},
                      origin=path)


def _read_ids(spec: str) -> list[str]:
    path = _resolve(spec)
    return [ln.split()[0] for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def make_source(params: dict[str, Any]) -> ClassFolderSource | PlainFolderSource:
    p = parse_params(FolderParams, params, "imagefolder")
    if p.splits and p.splits != (p.split,):
        raise InputError(f"imagefolder: this source has the single split {p.split!r} (set split=NAME to rename it)")
    if p.expected < 0:
        raise InputError("imagefolder: expected must be >= 0 (0 = no published total)")
    if p.mode == "plain":
        if p.class_list or p.ids:
            raise InputError("imagefolder: class_list and ids only apply to mode=classes")
        return PlainFolderSource(p)
    return ClassFolderSource(p)


def report(build_report: Any, params: dict[str, Any]) -> str:
    p = parse_params(FolderParams, params, "imagefolder")
    expected = {p.split: p.expected} if p.expected else {}
    return totals_report(build_report, expected, f"{p.dataset} ({p.mode} folders)")
