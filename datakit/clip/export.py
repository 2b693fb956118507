"""Get retrieved images back: locate their files (or pull them out of shards) and write them as shards.

Files of folder inputs are read where they were indexed, or under ``--path-root``; images of shard
inputs are streamed out of their shard once into a scratch folder. ``RetrievedSource`` feeds the
result to ``datakit.pipeline.build`` with image-level labels (0 = background, 1..C = categories).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import SampleError
from ..io import is_url
from ..sources.base import Listing, Record, Sample
from ..shards.spec import ClassTable, SplitSpec
from ..shards.writer import sanitize_key
from ..sources.common import input_file, read_input
from .store import ClipIndex


@dataclass(frozen=True)
class Entry:
    """One retrieved image: which index and row, and its table columns."""

    index: int
    row: int
    source: str
    key: str
    path: str
    wnid: str | None
    part: int


def _join(root: str, path: str) -> str:
    """Join a root and a relative path with one slash."""
    return f"{root.rstrip('/')}/{path.lstrip('/')}"


def _shard_file(index: ClipIndex, entry: Entry) -> str | None:
    """The shard that holds an entry's image, for indexes built from shards (else None)."""
    unit = index.unit(entry.part)
    shard = unit.get("shard")
    if not shard:
        return None
    if is_url(shard) or shard.startswith("/"):
        return shard
    root = index.source_root(entry.source)
    return _join(root, shard) if root else None


def _extract(shard: str, wanted: dict[str, Path]) -> None:
    """Stream one shard and write the image bytes of the wanted keys to their scratch paths."""
    from ..shards.reader import iter_shard
    from .images import IMAGE_MEMBERS

    for sample in iter_shard(shard):
        dest = wanted.get(str(sample["__key__"]))
        data = next((sample[m] for m in IMAGE_MEMBERS if isinstance(sample.get(m), bytes)), None)
        if dest is not None and isinstance(data, bytes):
            dest.write_bytes(data)


def locate_images(indexes: Sequence[ClipIndex], entries: Sequence[Entry], scratch: Path,
                  path_roots: Mapping[str, str]) -> dict[tuple[int, int], str | None]:
    """A readable local file for each entry (None where the image cannot be found)."""
    found: dict[tuple[int, int], str | None] = {}
    by_shard: dict[str, dict[str, Path]] = {}
    for e in entries:
        idx = indexes[e.index]
        shard = _shard_file(idx, e)
        if shard is not None:
            scratch.mkdir(parents=True, exist_ok=True)
            dest = scratch / f"{e.index}_{e.row}.img"
            by_shard.setdefault(shard, {})[e.key] = dest
            found[(e.index, e.row)] = str(dest)
            continue
        candidates = [_join(r, e.path) for r in (idx.source_root(e.source), path_roots.get(e.source)) if r]
        found[(e.index, e.row)] = next((c for c in candidates if os.path.isfile(c)), None)
    for shard, wanted in by_shard.items():
        if is_url(shard) or os.path.isfile(shard):
            _extract(shard, wanted)
    for key, path in list(found.items()):
        if path is not None and not os.path.isfile(path):
            found[key] = None
    return found


def ignore_for(n_classes: int) -> int:
    """ZUTIS's ignore ids: 255 while labels fit 8 bits, 1000 for ImageNet-S-sized tables, else 65535."""
    return 255 if n_classes < 255 else 1000 if n_classes < 1000 else 65535


@dataclass(frozen=True, slots=True)
class RetrievedImage:
    """One retrieved image to build: its file (None when it was not found), label and json metadata."""

    file: str | None
    cls: int
    meta: dict[str, Any]


@dataclass
class RetrievedSource:
    """The retrieved images as a datakit source: one ``train`` split, ``cls`` = image-level label."""

    dataset: str
    categories: tuple[str, ...]
    items: tuple[Record[RetrievedImage], ...]
    notes: dict[str, Any] = field(default_factory=dict)
    name: str = "retrieved"

    def roots(self) -> tuple[str, ...]:
        return ()

    def splits(self) -> Sequence[str]:
        return ["train"]

    def spec(self, split: str) -> SplitSpec:
        names = ["background", *self.categories]
        table = ClassTable.from_names(names, ignore_index=ignore_for(len(names)))
        return SplitSpec(self.dataset, split, classes=table, cls=True, meta=True, notes=self.notes)

    def records(self, split: str) -> Listing:
        return Listing(list(self.items))

    def load(self, record: Record[RetrievedImage]) -> Sample:
        """Read the image file; a missing file is a SampleError (recorded by the build, not fatal)."""
        img = record.payload
        assert isinstance(img, RetrievedImage)
        if not img.file:
            raise SampleError("image_not_found", str(img.meta.get("path", record.key)))
        return Sample(record.key, read_input(img.file), cls=img.cls, meta=dict(img.meta), origin=img.file)


def make_record(entry: Entry, file: str | None, label: int, meta: dict[str, Any]) -> Record[RetrievedImage]:
    """A build record for one retrieved image: key ``<source>_<key>``, its file, label and metadata."""
    key = sanitize_key(f"{entry.source}_{entry.key}")
    stamp = input_file(file) if file else None
    return Record(key, RetrievedImage(file, label, meta), max(stamp.size, 0) if stamp else 0, (stamp,) if stamp else ())
