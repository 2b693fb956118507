"""Small generated inputs for the foundation tests: JPEG variants and a list-backed Source."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from datakit.errors import SampleError
from datakit.sources.base import Record, Sample
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec


def photo(seed: int, w: int = 64, h: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "JPEG", mode: str | None = None) -> bytes:
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


@dataclass
class ListSource:
    """A source over in-memory items: ``{"key", "image": bytes|None, "mask": array|None, "error": str|None}``."""

    items: list[dict[str, Any]]
    bits: int = 8
    name: str = "listsrc"
    crash_at: int | None = None
    masks: bool = True
    classes: Sequence[str] = field(default_factory=lambda: ["background", "a", "b", "c"])

    def splits(self) -> list[str]:
        return ["train"]

    def spec(self, split: str) -> SplitSpec:
        ignore = 255 if self.bits == 8 else 1000
        members = (MaskMember(bits=self.bits, fill=ignore),) if self.masks else ()
        return SplitSpec(self.name, split, ClassTable.from_names(list(self.classes), ignore), masks=members, cls=True)

    def records(self, split: str) -> list[Record]:
        return [Record(it["key"], i, len(it.get("image") or b"")) for i, it in enumerate(self.items)]

    def load(self, record: Record) -> Sample:
        i = record.payload
        if self.crash_at is not None and i == self.crash_at:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        it = self.items[i]
        if it.get("error"):
            raise SampleError(it["error"], f"item {i}")
        masks = {"seg.png": it["mask"]} if it.get("mask") is not None else {}
        return Sample(record.key, it.get("image"), masks, cls=i % len(self.classes), meta={"i": i}, origin=f"item{i}")


def make_items(n: int, seed: int = 0, w: int = 64, h: int = 48, bits: int = 8) -> list[dict[str, Any]]:
    items = []
    for i in range(n):
        img = photo(seed * 1000 + i, w, h)
        top = 4 if bits == 8 else 999
        mask = (np.arange(w * h).reshape(h, w) + i) % top
        items.append({"key": f"img_{i:04d}", "image": encode(img), "mask": mask.astype(np.uint16 if bits == 16 else np.uint8)})
    return items


def read_split(out, split: str) -> dict[str, dict[str, Any]]:
    """Raw (undecoded) samples of a built split, by key."""
    from datakit.shards.index import load_index
    from datakit.shards.reader import iter_split

    return {s["__key__"]: s for s in iter_split(load_index(out / split), decode=False)}


def publish(split_dir, spec, stats: list) -> None:
    """Write done markers and the index of hand-made shards the way a build does (for forged-shard tests)."""
    from pathlib import Path

    from datakit.io import open_output
    from datakit.jobs.parts import PartStore
    from datakit.shards.index import INDEX_NAME, index_bytes, make_index

    split_dir = Path(split_dir)
    out = open_output(str(split_dir.parent))
    store = PartStore(out, split_dir.name, ".stats.json")
    for s in stats:
        store.commit(s.name, [], {**s.to_json(), "files": {s.file: s.bytes} if s.file else {}})
    out.write_bytes(split_dir.name, INDEX_NAME, index_bytes(make_index(spec, stats, {})))
