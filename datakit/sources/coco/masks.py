"""COCO segmentation decoding (polygons, uncompressed and compressed RLE) with input checks.

Decoding follows pycocotools' ``COCO.annToRLE``/``annToMask`` exactly, after checking that the
RLE sizes and run lengths agree with the image so a bad annotation becomes a ``SampleError``
instead of an out-of-bounds write inside pycocotools.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ...errors import SampleError


def rle_string_counts(counts: str | bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' 6-bit variable-length code)."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    out: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(data):
                raise ValueError("truncated RLE string")
            code = data[pos] - 48
            if not 0 <= code < 64:
                raise ValueError(f"byte {data[pos]!r} is not an RLE digit")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            pos += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return out


def _check_counts(counts: list[int], h: int, w: int, origin: str) -> None:
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise SampleError("bad_annotation", f"{origin}: RLE runs sum to {sum(counts)}, image has {h * w} pixels")


def _check_rle_size(segm: dict[str, Any], h: int, w: int, origin: str) -> None:
    size = segm.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise SampleError("bad_annotation", f"{origin}: RLE without a [height, width] size")
    if (int(size[0]), int(size[1])) != (h, w):
        raise SampleError("mask_size_mismatch", f"{origin}: RLE is {size[1]}x{size[0]}, image is {w}x{h}")


def to_rle(segm: Any, h: int, w: int, origin: str) -> dict[str, Any]:
    """Any COCO ``segmentation`` as one compressed RLE dict (``counts`` bytes), checked first."""
    try:
        if isinstance(segm, list):
            if not segm:  # a few real annotations have no polygon at all: no pixels
                return mask_utils.encode(np.zeros((h, w), np.uint8, order="F"))
            if not all(isinstance(p, list) and len(p) >= 4 for p in segm):
                raise SampleError("bad_annotation", f"{origin}: polygon with fewer than 2 points")
            return mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
        if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
            _check_rle_size(segm, h, w, origin)
            _check_counts([int(c) for c in segm["counts"]], h, w, origin)
            return mask_utils.frPyObjects(segm, h, w)
        if isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
            _check_rle_size(segm, h, w, origin)
            _check_counts(rle_string_counts(segm["counts"]), h, w, origin)
            counts = segm["counts"]
            return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    except (TypeError, ValueError, IndexError, OverflowError) as err:
        raise SampleError("bad_annotation", f"{origin}: {err}") from None
    raise SampleError("bad_annotation", f"{origin}: segmentation is neither polygons nor RLE")


def decode(rle: dict[str, Any]) -> np.ndarray:
    """HxW uint8 0/1 mask of a compressed RLE."""
    return np.ascontiguousarray(mask_utils.decode(rle))


def decode_t(rle: dict[str, Any]) -> np.ndarray:
    """The transposed (W x H) boolean mask, without a copy (pycocotools fills column-major)."""
    return mask_utils.decode(rle).T.view(np.bool_)


def area(rle: dict[str, Any]) -> int:
    """Foreground pixel count, computed from the runs (no decode)."""
    return int(mask_utils.area(rle))


def rle_json(rle: dict[str, Any]) -> dict[str, Any]:
    """A compressed RLE in the JSON form COCOeval reads (``counts`` as text)."""
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
