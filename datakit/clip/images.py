"""Image inputs of an index: ImageNet train folders, PASS/plain folders and datakit shards.

An input is split into *parts* (runs of ``part_size`` files, or one shard each); a part is the
unit of work, of resume and of storage. ``PartStream`` decodes and preprocesses parts inside
DataLoader workers (each worker owns whole parts) and yields batches tagged with their part.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import InputError, SampleError
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
    if "://" in path:
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
    root = path if "://" in path else str(Path(path).resolve())
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
            name = entry.url if "://" in entry.url or entry.url.startswith("/") else f"{split.spec.split}/{entry.url}"
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


def open_rgb(data: bytes | str, origin: str) -> Image.Image:
    """Decode like ZUTIS/CLIP (``Image.open(...).convert("RGB")``); a bad image is a SampleError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("unreadable_image", f"{origin}: {err}") from None


Item = tuple[str, str, "str | None", Callable[[], Image.Image]]


def _file_items(task: PartTask) -> Iterator[Item]:
    """(key, relative path, wnid, loader) of each file of a part."""
    for rel in task.files:
        parts = rel.replace(os.sep, "/").split("/")
        wnid = parts[0] if task.kind == "imagenet" and len(parts) > 1 and WNID.match(parts[0]) else None
        full = os.path.join(task.root, rel)
        yield os.path.splitext(rel)[0].replace(os.sep, "/"), rel.replace(os.sep, "/"), wnid, (lambda p=full: open_rgb(p, p))


def _shard_items(task: PartTask) -> Iterator[Item]:
    """(key, path from the sample's json, wnid, loader) of each sample of a shard."""
    from ..shards.tario import iter_samples

    if "://" in task.shard:
        from ..io import read_bytes

        handle: Any = io.BytesIO(read_bytes(task.shard))
    else:
        handle = open(task.shard, "rb")
    with handle:
        for sample in iter_samples(handle, task.shard):
            key = str(sample["__key__"])
            meta: dict[str, Any] = {}
            raw = sample.get("json")
            if isinstance(raw, bytes):
                try:
                    meta = json.loads(raw)
                except ValueError:
                    meta = {}
            data = next((sample[m] for m in IMAGE_MEMBERS if isinstance(sample.get(m), bytes)), None)
            origin = f"{task.shard}:{key}"

            def load(d: Any = data, o: str = origin) -> Image.Image:
                if d is None:
                    raise SampleError("missing_image", o)
                return open_rgb(d, o)

            yield key, str(meta.get("path") or key), meta.get("wnid"), load


ITEM_READERS: dict[str, Callable[[PartTask], Iterator[Item]]] = {
    "imagenet": _file_items, "folder": _file_items, "shards": _shard_items,
}


def _batch(task: PartTask, tensors: list[Any], meta: list[tuple[str, str, str | None]],
           failures: list[dict[str, str]], end: bool) -> dict[str, Any]:
    """A batch dict: stacked tensors plus the rows' metadata and the part's failures so far."""
    import torch

    return {
        "part": task.index, "images": torch.stack(tensors) if tensors else None,
        "keys": [m[0] for m in meta], "paths": [m[1] for m in meta], "wnids": [m[2] for m in meta],
        "failures": failures, "end": end,
    }


def iter_part_batches(task: PartTask, transform: Any, batch_size: int) -> Iterator[dict[str, Any]]:
    """Decoded, preprocessed batches of one part; the last one has ``end=True`` (it may be empty)."""
    tensors: list[Any] = []
    meta: list[tuple[str, str, str | None]] = []
    failures: list[dict[str, str]] = []
    for key, path, wnid, load in ITEM_READERS[task.kind](task):
        try:
            tensors.append(transform(load()))
        except SampleError as err:
            failures.append({"key": key, "path": path, "reason": err.reason, "detail": err.detail})
            continue
        meta.append((key, path, wnid))
        if len(tensors) == batch_size:
            yield _batch(task, tensors, meta, failures, False)
            tensors, meta, failures = [], [], []
    yield _batch(task, tensors, meta, failures, True)


class PartStream(IterableDataset):
    """An IterableDataset over parts: DataLoader worker w reads parts w, w+W, ... in full."""

    def __init__(self, tasks: Sequence[PartTask], transform: Any, batch_size: int) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.transform = transform
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        mine = self.tasks if info is None else self.tasks[info.id::info.num_workers]
        for task in mine:
            yield from iter_part_batches(task, self.transform, self.batch_size)


def make_loader(tasks: Sequence[PartTask], transform: Any, batch_size: int, workers: int, pin: bool) -> Any:
    """A DataLoader yielding ready batches (batching happens in the workers, per part)."""
    workers = max(0, min(workers, len(tasks)))
    extra = {"prefetch_factor": 4, "persistent_workers": False} if workers > 0 else {}
    return DataLoader(PartStream(tasks, transform, batch_size), batch_size=None, num_workers=workers,
                      pin_memory=pin, **extra)
