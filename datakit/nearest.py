"""Nearest-neighbour resizing of label maps by the rules the reference tools use, so ids match theirs.

``floor`` is OpenCV's ``INTER_NEAREST`` (MaskFormer's ADE-847 conversion, MaskContrast's scoring):
source index ``floor(i * scale)`` with the scale computed as ``1 / (dst / src)`` in double precision
(not ``src / dst``: the two round differently). ``center`` samples pixel centres, as MATLAB's
``imresize(..., 'nearest')`` and PIL do (ADE20K's convertFromADE.m).
"""

from __future__ import annotations

import numpy as np

RULES = ("floor", "center")


def nearest_index(src: int, dst: int, rule: str = "floor") -> np.ndarray:
    """The source row or column of each of ``dst`` output positions, clamped to ``src - 1``."""
    if rule == "center":
        pos = np.floor((np.arange(dst) + 0.5) * (src / dst))
    else:
        pos = np.floor(np.arange(dst) * (1.0 / (dst / src)))
    return np.minimum(pos.astype(np.int64), src - 1)


def resize_nearest(arr: np.ndarray, shape: tuple[int, int], rule: str = "floor") -> np.ndarray:
    """``arr`` resized to (height, width) by ``rule``; the same array when the size already matches."""
    h, w = arr.shape[:2]
    if (h, w) == tuple(shape):
        return arr
    return arr[nearest_index(h, shape[0], rule)[:, None], nearest_index(w, shape[1], rule)[None, :]]
