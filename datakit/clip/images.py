"""Image inputs of an index: ImageNet train folders, PASS/plain folders and datakit shards.

An input is split into *parts* (runs of ``part_size`` files, or one shard each); a part is the
unit of work, of resume and of storage. ``loader.py`` decodes and batches them for the model.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


from ..errors import InputError
from ..io import is_url
from ..sources.common import scan_tree

WNID = re.compile(r"^n\d{8}$")
IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class InputSpec:
    """One input of an index: its name (the ``source`` column), kind and root folder or URL."""

    name: str
    kind: str
    root: str


@dataclass(frozen=True)
class PartTask:
    """One part to embed: its global index, its unit (recorded in the plan) and how to read it."""

    index: int
    source: str
    kind: str
    root: str
    unit: dict[str, Any]
    files: tuple[str, ...] = ()
    shard: str = ""

    @property
    def size(self) -> int:
        return int(self.unit["count"])


def _looks_imagenet(root: Path) -> bool:
    """True when every sub-folder is named like a wnid."""
    subdirs = [d.name for d in root.iterdir() if d.is_dir()]
    return bool(subdirs) and all(WNID.match(d) for d in subdirs)


def detect_kind(path: str) -> str:
    """``shards`` (a datakit index below), ``imagenet`` (wnid class folders) or ``folder`` (any images)."""
    if is_url(path):
        return "shards"
    root = Path(path)
    if not root.exists():
        raise InputError(f"input not found: {path}")
    if root.is_file() or (root / "index.json").exists() or any(root.glob("*/index.json")):
        return "shards"
    return "imagenet" if _looks_imagenet(root) else "folder"


def _default_name(path: str, kind: str) -> str:
    """A source name from the path: imagenet, the parent of an ``images`` folder (pass), or the folder name."""
    if kind == "imagenet":
        return "imagenet"
    p = Path(path.rstrip("/"))
    if p.name in ("images", "train", "val") and p.parent.name:
        return p.parent.name.lower()  # pass/images -> pass
    return p.name or "images"


def parse_input(text: str) -> InputSpec:
    """``[NAME=]PATH``: NAME becomes the ``source`` column (default ``imagenet``, ``pass``...)."""
    name, sep, path = text.partition("=")
    if not sep or "/" in name:
        name, path = "", text
    kind = detect_kind(path)
    root = path if is_url(path) else str(Path(path).resolve())
    return InputSpec(name or _default_name(path, kind), kind, root)


def _files_units(spec: InputSpec, part_size: int) -> list[tuple[dict[str, Any], tuple[str, ...], str]]:
    """Parts of ``part_size`` sorted files; a unit records the first file, count and a hash of the names."""
    files = sorted(os.path.relpath(f.path, spec.root) for f in scan_tree(spec.root))
    if not files:
        raise InputError(f"{spec.root}: no images found")
    out = []
    for start in range(0, len(files), part_size):
        chunk = tuple(files[start:start + part_size])
        digest = hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:16]
        unit = {"source": spec.name, "kind": spec.kind, "first": chunk[0], "count": len(chunk), "sha": digest}
        out.append((unit, chunk, ""))
    return out


def _shard_units(spec: InputSpec, part_size: int) -> list[tuple[dict[str, Any], tuple[str, ...], str]]:
    """One part per shard of every split index under the input."""
    from ..shards.index import find_indexes

    out = []
    for split in find_indexes(spec.root):
        for entry in split.shards:
            name = f"{split.spec.split}/{entry.url}"  # index urls are file names in the split folder
            unit = {"source": spec.name, "kind": "shards", "shard": name, "count": entry.nsamples, "sha": entry.sha256}
            out.append((unit, (), split.shard_path(entry)))
    if not out:
        raise InputError(f"{spec.root}: the shard index lists no shards")
    return out


UNIT_PLANNERS: dict[str, Callable[[InputSpec, int], list[tuple[dict[str, Any], tuple[str, ...], str]]]] = {
    "imagenet": _files_units, "folder": _files_units, "shards": _shard_units,
}


def plan_parts(inputs: Sequence[InputSpec], part_size: int) -> list[PartTask]:
    """Every part of every input, in a fixed order (inputs as given, then files sorted or shards listed)."""
    if part_size < 1:
        raise InputError("--part-size must be positive")
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise InputError(f"input names must be distinct, got {names}; use NAME=PATH")
    tasks: list[PartTask] = []
    for spec in inputs:
        if spec.kind not in UNIT_PLANNERS:
            raise InputError(f"unknown input kind {spec.kind!r}; known: {sorted(UNIT_PLANNERS)}")
        for unit, files, shard in UNIT_PLANNERS[spec.kind](spec, part_size):
            tasks.append(PartTask(len(tasks), spec.name, spec.kind, spec.root, unit, files, shard))
    return tasks
