"""The one decoder table for shard members, used by every reader (verify, stats, show, eval, stream).

``jpg`` → HxWx3 uint8 RGB at full resolution; ``*.png`` masks → the stored integer ids (uint8 or
uint16, see ``codecs.decode_mask``); ``cls`` → int; ``json`` → dict; anything else stays bytes.
A member that does not decode is a ``CorruptShardError`` naming the shard and the sample.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from PIL import Image

from ..errors import CorruptShardError, SampleError
from .codecs import decode_mask, decode_rgb

DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, SampleError)


def _decode_cls(data: bytes) -> int:
    return int(data)


def _decode_json(data: bytes) -> Any:
    return json.loads(data)


DECODERS: dict[str, Callable[[bytes], Any]] = {"jpg": decode_rgb, "cls": _decode_cls, "json": _decode_json}


def decoder_for(ext: str) -> Callable[[bytes], Any] | None:
    """The decoder of a member extension; masks (``*.png``) are matched by suffix."""
    if ext in DECODERS:
        return DECODERS[ext]
    if ext.endswith(".png"):
        return decode_mask
    return None


def decode_sample(raw: Mapping[str, Any], label: str = "", keep: frozenset[str] | None = None,
                  rename: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Decode a raw sample ``{"__key__": key, ext: bytes}``.

    ``keep`` limits which members are decoded and returned (None: all); ``rename`` maps a member
    extension to the output name (the loader calls ``jpg`` ``image``).
    """
    out: dict[str, Any] = {"__key__": raw["__key__"]}
    names = rename or {}
    for ext, data in raw.items():
        if ext == "__key__" or (keep is not None and ext not in keep):
            continue
        fn = decoder_for(ext)
        if fn is None:
            out[names.get(ext, ext)] = bytes(data)
            continue
        try:
            out[names.get(ext, ext)] = fn(data)
        except DECODE_ERRORS as err:
            raise CorruptShardError(f"{label}: sample {raw['__key__']!r} member {ext!r} does not decode ({err})") from None
    return out
