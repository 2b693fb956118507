"""Ground truth and prediction files for the evaluators: shards or official folders, id PNGs.

GT comes either from built shards (one picklable chunk per shard, read inside the worker) or
from an official ``validation-segmentation/<wnid>/<name>.png`` folder (RGB, id = R + 256*G).
Each GT item carries the relative path its prediction must have under the prediction folder.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..io import is_url
from ..errors import CorruptShardError, InputError, SampleError
from ..shards.codecs import decode_mask
from ..shards.index import SplitIndex, find_indexes, load_index
from ..shards.reader import iter_shard

_KEY_WNID = re.compile(r"^(n\d{8})[_/](.+)$")
NAME_KEYS = ("file", "name", "filename", "file_name", "image", "path", "src", "origin")
SINGLE_CHANNEL_MODES = ("L", "I;16", "I;16B", "I;16L", "I", "P", "1")


def _open_png(source: str | bytes, what: str) -> Image.Image:
    """A decoded PNG; a missing or unreadable file is an InputError naming it."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
    except FileNotFoundError:
        raise InputError(f"missing {what}: {source}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"unreadable {what} {source if isinstance(source, str) else ''}: {err}") from None
    return img


def decode_id_png(source: str | bytes, what: str = "id PNG") -> np.ndarray:
    """Official ImageNet-S encoding: an RGB(A) PNG whose id is R + 256*G, as an int64 map."""
    img = _open_png(source, what)
    if img.mode not in ("RGB", "RGBA"):
        label = source if isinstance(source, str) else what
        raise InputError(f"{label}: {what} must be an RGB PNG with id = R + 256*G, not mode {img.mode}")
    arr = np.asarray(img)
    return arr[:, :, 0].astype(np.int64) + 256 * arr[:, :, 1].astype(np.int64)


def encode_id_png(ids: np.ndarray) -> bytes:
    """RGB PNG bytes with R = id % 256, G = id // 256, B = 0 (the submission format)."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or (ids.size and (int(ids.min()) < 0 or int(ids.max()) > 65535)):
        raise ValueError("ids must be a 2-D map of values 0..65535")
    rgb = np.zeros(ids.shape + (3,), dtype=np.uint8)
    rgb[:, :, 0] = ids % 256
    rgb[:, :, 1] = ids // 256
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def read_label_png(path: str, what: str = "prediction") -> np.ndarray:
    """A single-channel label PNG (8- or 16-bit grey, or palette indices) as an int64 map."""
    img = _open_png(path, what)
    if img.mode not in SINGLE_CHANNEL_MODES:
        raise InputError(f"{path}: {what} must be a single-channel PNG of class ids, not mode {img.mode}")
    return np.asarray(img).astype(np.int64)


@dataclass(frozen=True)
class GTItem:
    """One GT map and the path (relative to the prediction folder) of its prediction."""

    rel: str
    ids: np.ndarray


@dataclass(frozen=True)
class FolderChunk:
    """Some official GT PNGs (``root/<wnid>/<name>.png``), read as R + 256*G."""

    root: str
    rels: tuple[str, ...]

    def items(self) -> Iterator[GTItem]:
        """Each GT map with its prediction path, in listed order."""
        for rel in self.rels:
            yield GTItem(rel, decode_id_png(os.path.join(self.root, rel), "ground-truth mask"))


def imagenets_rel(key: str, meta: dict) -> str:
    """``<wnid>/<name>.png`` of an ImageNet-S sample from its json meta (or a ``<wnid>_<name>`` key)."""
    wnid = meta.get("wnid")
    name = next((meta[k] for k in NAME_KEYS if isinstance(meta.get(k), str) and meta[k]), None)
    if name is not None:
        name = os.path.splitext(os.path.basename(name))[0]
    if not (wnid and name):
        found = _KEY_WNID.match(key)
        if not found:
            raise SampleError("no_wnid", f"json meta has no wnid and file name, and key {key!r} is not <wnid>_<name>")
        wnid, name = wnid or found.group(1), name or found.group(2)
    return f"{wnid}/{name}.png"


def key_rel(key: str, meta: dict) -> str:
    """Generic datasets: the prediction is ``<key>.png``."""
    return f"{key}.png"


NAMINGS = {"imagenets": imagenets_rel, "key": key_rel}


@dataclass(frozen=True)
class ShardChunk:
    """One shard; its mask member is decoded exactly as stored (16-bit stays 16-bit)."""

    url: str
    member: str
    naming: str

    def items(self) -> Iterator[GTItem]:
        """Each sample's mask with its prediction path, in stored order."""
        rel_of = NAMINGS[self.naming]
        for raw in iter_shard(self.url):
            key = str(raw["__key__"])
            if self.member not in raw:
                raise CorruptShardError(f"{self.url}: sample {key} has no {self.member} member")
            try:
                meta = json.loads(raw["json"]) if "json" in raw else {}
                ids = decode_mask(raw[self.member]).astype(np.int64)  # type: ignore[arg-type]
                rel = rel_of(key, meta)
            except (SampleError, OSError, ValueError) as err:
                raise CorruptShardError(f"{self.url}: sample {key}: {err}") from None
            yield GTItem(rel, ids)


GTChunk = FolderChunk | ShardChunk


@dataclass(frozen=True)
class GTSet:
    """Where the GT is, split into worker-sized chunks, with its class table facts."""

    source: str
    chunks: tuple[GTChunk, ...]
    total: int
    num_classes: int
    ignore_index: int | None
    class_names: tuple[str, ...]
    split: str | None = None


def class_count(index: SplitIndex) -> tuple[int, int | None, tuple[str, ...]]:
    """(K, ignore id, names) from an index's class table; K = largest non-ignore id + 1."""
    table = index.spec.classes
    if table is None:
        raise InputError(f"{index.base}: the split has no class table; cannot evaluate against it")
    names = {e.id: e.name for e in table.entries if e.id != table.ignore_index}
    if not names:
        raise InputError(f"{index.base}: the class table is empty")
    k = max(names) + 1
    return k, table.ignore_index, tuple(names.get(i, str(i)) for i in range(k))


def mask_member(index: SplitIndex, member: str | None) -> str:
    """The mask member to evaluate (``SplitSpec.mask_ext``); a split without masks is an InputError."""
    ext = index.spec.mask_ext(member)
    if ext is None:
        raise InputError(f"{index.base}: the split has no mask member to evaluate against")
    return ext


def load_split(path: str) -> SplitIndex:
    """One split index from a split folder, an index file or a URL (a dataset root must hold exactly one)."""
    if is_url(path) or path.endswith(".json"):
        return load_index(path)
    found = find_indexes(path)
    if len(found) != 1:
        splits = ", ".join(i.spec.split for i in found)
        raise InputError(f"{path} holds several splits ({splits}); point --gt at one split folder")
    return found[0]


def shard_gt(path: str, naming: str, member: str | None = None) -> GTSet:
    """GT from one split's shards: one chunk per shard; ``naming`` picks the prediction paths."""
    index = load_split(path)
    k, ignore, names = class_count(index)
    ext = mask_member(index, member)
    chunks = tuple(ShardChunk(index.shard_path(e), ext, naming) for e in index.shards)
    return GTSet(path, chunks, index.total, k, ignore, names, index.spec.split)


def scan_id_folder(root: Path) -> list[str]:
    """``<class>/<name>.png`` files under root, sorted."""
    rels = sorted(f"{d.name}/{f.name}" for d in root.iterdir() if d.is_dir() for f in d.iterdir()
                  if f.suffix == ".png" and f.is_file())
    if not rels:
        raise InputError(f"{root}: no <wnid>/<name>.png ground-truth masks found")
    return rels


def chunked(rels: list[str], size: int) -> list[tuple[str, ...]]:
    """Consecutive slices of at most ``size`` paths (one worker task each)."""
    return [tuple(rels[i : i + size]) for i in range(0, len(rels), max(1, size))]


def is_shards(path: str) -> bool:
    """A URL, an index file, a split folder or a dataset root of split folders."""
    p = Path(path)
    return is_url(path) or p.suffix == ".json" or (p / "index.json").exists() or any(p.glob("*/index.json"))
