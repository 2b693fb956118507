"""Member decoders for the loader: ``jpg`` → ``image`` (HxWx3 uint8), ``*.png`` masks exactly as stored.

One PIL decode per image and no draft mode (full resolution); masks keep their bit depth
(8-bit → uint8, 16-bit → uint16) and are never converted to another mode. A member that does not
decode is a ``CorruptShardError`` naming the shard and the sample.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import CorruptShardError

_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_MASK_MODES = {"L": None, "1": np.uint8, "I;16": None, "I;16L": None, "I;16B": np.uint16, "I": None}


def decode_rgb(data: bytes) -> np.ndarray:
    """HxWx3 uint8 RGB at full resolution (datakit stores RGB JPEGs, so no conversion is needed)."""
    img = Image.open(io.BytesIO(data))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def decode_label_map(data: bytes) -> np.ndarray:
    """A single-channel PNG as uint8 or uint16, values untouched."""
    img = Image.open(io.BytesIO(data))
    if img.mode not in _MASK_MODES:
        raise ValueError(f"mask PNG has mode {img.mode}, expected a single-channel label map")
    arr = np.asarray(img)
    if arr.dtype == np.uint8 or arr.dtype == np.uint16:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ValueError(f"mask values {arr.min()}..{arr.max()} do not fit 16 bits")
    return arr.astype(np.uint16 if arr.size and arr.max() > 255 else np.uint8)


def _decode_cls(data: bytes) -> int:
    return int(data)


def _decode_json(data: bytes) -> Any:
    return json.loads(data)


# member extension → (output name, decoder); masks (``*.png``) are matched by suffix below.
DECODERS: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    "jpg": ("image", decode_rgb),
    "cls": ("cls", _decode_cls),
    "json": ("json", _decode_json),
}


def decoder_for(ext: str) -> tuple[str, Callable[[bytes], Any]] | None:
    if ext in DECODERS:
        return DECODERS[ext]
    if ext.endswith(".png"):
        return ext, decode_label_map
    return None


def decode_members(raw: dict[str, Any], label: str, keep: frozenset[str] | None = None) -> dict[str, Any]:
    """Decode a raw sample; ``keep`` limits which members are decoded (None: all of them)."""
    out: dict[str, Any] = {"__key__": raw["__key__"]}
    for ext, data in raw.items():
        if ext == "__key__" or (keep is not None and ext not in keep):
            continue
        found = decoder_for(ext)
        if found is None:
            out[ext] = bytes(data)
            continue
        name, fn = found
        try:
            out[name] = fn(data)
        except _PIL_ERRORS as err:
            raise CorruptShardError(f"{label}: sample {raw['__key__']!r} member {ext!r} does not decode ({err})") from None
    return out
