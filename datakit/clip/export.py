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
from ..sources.base import Record, Sample
from ..shards.spec import ClassTable, SplitSpec
from ..shards.writer import sanitize_key
from ..sources.common import read_bytes
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
    if "://" in shard or shard.startswith("/"):
        return shard
    root = index.source_root(entry.source)
    return _join(root, shard) if root else None


def _extract(shard: str, wanted: dict[str, Path]) -> None:
    """Stream one shard and write the image bytes of the wanted keys to their scratch paths."""
    from ..shards.tario import iter_samples
    from .images import IMAGE_MEMBERS

    if "://" in shard:
        import io

        from ..io import read_bytes

        handle: Any = io.BytesIO(read_bytes(shard))
    else:
        handle = open(shard, "rb")
    with handle:
        for sample in iter_samples(handle, shard):
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
        if "://" in shard or os.path.isfile(shard):
            _extract(shard, wanted)
    for key, path in list(found.items()):
        if path is not None and not os.path.isfile(path):
            found[key] = None
    return found


def ignore_for(n_classes: int) -> int:
    """ZUTIS's ignore ids: 255 while labels fit 8 bits, 1000 for ImageNet-S-sized tables, else 65535."""
    return 255 if n_classes < 255 else 1000 if n_classes < 1000 else 65535


@dataclass
class RetrievedSource:
    """The retrieved images as a datakit source: one ``train`` split, ``cls`` = image-level label."""

    dataset: str
    categories: tuple[str, ...]
    items: tuple[Record, ...]
    notes: dict[str, Any] = field(default_factory=dict)
    name: str = "retrieved"

    def splits(self) -> Sequence[str]:
        return ["train"]

    def spec(self, split: str) -> SplitSpec:
        names = ["background", *self.categories]
        table = ClassTable.from_names(names, ignore_index=ignore_for(len(names)))
        return SplitSpec(self.dataset, split, classes=table, cls=True, meta=True, notes=self.notes)

    def records(self, split: str) -> list[Record]:
        return list(self.items)

    def load(self, record: Record) -> Sample:
        """Read the image file; a missing file is a SampleError (recorded by the build, not fatal)."""
        path = record.payload.get("file")
        if not path:
            raise SampleError("image_not_found", str(record.payload.get("meta", {}).get("path", record.key)))
        return Sample(record.key, read_bytes(path), cls=int(record.payload["cls"]), meta=dict(record.payload["meta"]), origin=path)


def make_record(entry: Entry, file: str | None, label: int, meta: dict[str, Any]) -> Record:
    """A build record for one retrieved image: key ``<source>_<key>``, its file, label and metadata."""
    key = sanitize_key(f"{entry.source}_{entry.key}")
    size = os.path.getsize(file) if file and os.path.isfile(file) else 0
    return Record(key, {"file": file, "cls": label, "meta": meta}, size)
