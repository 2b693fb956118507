"""A cache of prompt-ensembled category embeddings, so a second ``retrieve`` never loads the text tower.

An entry is keyed by everything its numbers depend on: the text model (name, weights tag, or a
content fingerprint of a checkpoint file or folder; for random weights the seed and the torch and
open_clip versions), the exact template list and the exact category list. The key's inputs are
stored in full beside the array and compared on every read, so a stale or mismatched entry (or a
hash collision, or a torn or edited file) is a miss, never a wrong answer.

Entries live in ``$DATAKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/datakit``, else ``~/.cache/datakit``
(folder ``clip-text/``): ``<key>.npy`` (float32 [C, dim]) first, then ``<key>.json``, the marker.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import InputError
from ..io import atomic_save_npy, atomic_write_json
from .model import OPENAI_NAMES, RANDOM_INIT_SEED, ModelSpec, checkpoint_fingerprint

CACHE_FORMAT = 1
SUBDIR = "clip-text"
NORM_TOLERANCE = 1e-3


def default_dir() -> Path:
    """``$DATAKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/datakit``, else ``~/.cache/datakit``; then ``clip-text``."""
    root = os.environ.get("DATAKIT_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "datakit")
    return Path(root) / SUBDIR


def resolve_dir(option: str | None) -> Path | None:
    """The cache folder for a ``--text-cache`` value: None/'' = default, 'none'/'off' = no cache, else that folder."""
    if option is None or option == "":
        return default_dir()
    if option.lower() in ("none", "off", "no"):
        return None
    return Path(option)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _folder_print(folder: Path) -> dict[str, str]:
    """Content fingerprints of the files of a weights folder (an open_clip/HF-style folder is flat)."""
    return {p.name: checkpoint_fingerprint(p) for p in sorted(folder.iterdir()) if p.is_file()}


def model_key(spec: ModelSpec) -> dict[str, Any]:
    """What the text embeddings of ``spec`` depend on, computed without loading the model."""
    name = OPENAI_NAMES.get(spec.name, spec.name)
    key: dict[str, Any] = {"name": name, "pretrained": spec.pretrained}
    pretrained = spec.pretrained
    if name.startswith("local-dir:"):
        folder = Path(name.split(":", 1)[1])
        key["weights"] = _folder_print(folder) if folder.is_dir() else None
    elif pretrained and os.path.isfile(pretrained):
        key["pretrained"] = f"file:{Path(pretrained).name}"
        key["weights"] = checkpoint_fingerprint(pretrained)
    elif pretrained and os.path.isdir(pretrained):
        key["pretrained"] = f"folder:{Path(pretrained).name}"
        key["weights"] = _folder_print(Path(pretrained))
    elif pretrained is None and not name.startswith("hf-hub:"):
        # random weights are a function of the seed and of the code that draws them
        key["weights"] = {"random_seed": RANDOM_INIT_SEED, "torch": _version("torch"),
                          "open_clip": _version("open_clip_torch")}
    return key


@dataclass(frozen=True)
class TextKey:
    """The full inputs of one cache entry and their digest (the file name)."""

    inputs: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True).encode()).hexdigest()[:32]


def text_key(spec: ModelSpec, categories: Sequence[str], templates: Sequence[str]) -> TextKey:
    """The key of the ensembled embeddings of ``categories`` with ``templates`` by ``spec``'s text tower."""
    return TextKey({"format": CACHE_FORMAT, "model": model_key(spec), "templates": list(templates),
                    "categories": list(categories)})


@dataclass
class CacheHit:
    """Embeddings read back, with what the entry recorded about how they were made."""

    embeddings: np.ndarray
    meta: dict[str, Any]
    path: Path


def _valid(arr: np.ndarray, n: int, dim: int | None) -> bool:
    """Right shape and dtype, finite, unit rows."""
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] != n or (dim is not None and arr.shape[1] != dim):
        return False
    if not np.isfinite(arr).all():
        return False
    return bool(np.all(np.abs(np.linalg.norm(arr, axis=1) - 1.0) < NORM_TOLERANCE))


def load(folder: Path | None, key: TextKey, dim: int | None) -> CacheHit | None:
    """The cached embeddings for ``key``, or None (absent, or anything at all that does not match)."""
    if folder is None:
        return None
    base = folder / key.digest
    try:
        meta = json.loads((base.with_suffix(".json")).read_text())
        arr = np.load(base.with_suffix(".npy"), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key.inputs:
        return None
    if not _valid(arr, len(key.inputs["categories"]), dim):
        return None
    return CacheHit(arr, meta, base.with_suffix(".npy"))


def save(folder: Path | None, key: TextKey, embeddings: np.ndarray, made: dict[str, Any]) -> str | None:
    """Store an entry (array first, marker last); returns a note when it could not be written, else None."""
    if folder is None:
        return None
    base = folder / key.digest
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(base.with_suffix(".npy"), np.ascontiguousarray(embeddings, np.float32))
        atomic_write_json(base.with_suffix(".json"), {"key": key.inputs, "created_by": f"datakit {__version__}",
                                                      "shape": list(embeddings.shape), **made})
    except (OSError, InputError) as err:
        return f"text embeddings not cached in {folder}: {err}"
    return None
