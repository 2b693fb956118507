"""The trainer's own checkpoints: safe to load (``weights_only=True``), atomic to write, and stamped with
the config they were written under so a resume with another recipe is refused.

Everything in a checkpoint is a tensor, a number, a string or a list/dict of them: RNG states are
stored as tensors and int lists, the loader position as JSON text. A file holding anything else
(e.g. a pickled object that runs code when loaded) is refused with one line.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io import atomic_write_bytes

FREE_KEYS = ("train.iterations", "train.out")  # may change between a run and its resume
# what torch.load raises for a file that is not a plain tensor checkpoint (pickled code, garbage, truncation)
UNREADABLE = (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, KeyError, OSError, zipfile.BadZipFile)


def reason(err: BaseException) -> str:
    """One line on why a checkpoint was not loaded."""
    if isinstance(err, pickle.UnpicklingError):
        return "it holds pickled objects other than tensors and numbers (code could run); not loaded"
    first = (str(err).strip().splitlines() or [""])[0]
    return f"not a readable torch checkpoint ({type(err).__name__}: {first[:120]})"


def rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python generator states in weights_only-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (lists of tables are indexed: ``data[0].path``)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "options":
            out.update(flatten(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out.update(flatten(item, f"{name}[{i}]."))
        else:
            out[name] = value
    return out


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the config without the keys that may change on resume."""
    flat = {k: v for k, v in flatten(config).items() if k not in FREE_KEYS}
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every differing key except the free ones."""
    a, b = flatten(old), flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in FREE_KEYS and a.get(k) != b.get(k)]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (tmp then rename): a crash never leaves a torn checkpoint."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A trainer checkpoint, loaded without running any pickled code."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except UNREADABLE as err:
        raise InputError(f"{path}: refused: {reason(err)}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise InputError(f"{path}: not a datakit trainer checkpoint (no 'model' and 'config')")
    return state
