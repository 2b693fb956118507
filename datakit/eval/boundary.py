"""The boundary band of the official ImageNet-S mBIoU (Boundary IoU, Cheng et al. 2021).

Official rule (PASS/ImageNet-S ``mask_to_boundary`` with ``dilation_ratio=0.03``): for each id,
erode its binary mask ``d = max(1, round(0.03 * diagonal))`` times with a 3x3 kernel after
zero-padding the image by one pixel, and keep mask minus erosion. That equals: a pixel is in
its id's band unless every pixel within Chebyshev distance ``d`` lies inside the image and has
the same id. We compute it for all ids at once with min/max filters of size ``2d + 1``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BOUNDARY_RATIO = 0.03


def band_width(height: int, width: int, ratio: float = BOUNDARY_RATIO) -> int:
    """``d``: Python's round (half to even) of ``ratio`` times the diagonal, at least 1."""
    return max(1, int(round(ratio * float(np.sqrt(height**2 + width**2)))))


def interior(labels: np.ndarray, d: int) -> np.ndarray:
    """True where the (2d+1)-square around a pixel is inside the image and holds a single id."""
    h, w = labels.shape
    inside = np.zeros((h, w), dtype=bool)
    if h <= 2 * d or w <= 2 * d:
        return inside
    size = 2 * d + 1
    lo = ndimage.minimum_filter(labels, size=size, mode="nearest")
    hi = ndimage.maximum_filter(labels, size=size, mode="nearest")
    inside[d : h - d, d : w - d] = True
    return inside & (lo == labels) & (hi == labels)


def boundary_map(labels: np.ndarray, ratio: float = BOUNDARY_RATIO) -> np.ndarray:
    """``labels + 1`` on band pixels and 0 elsewhere (int64), as ``get_boundary_mask(x + 1)``."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    work = labels.astype(np.int64)
    d = band_width(*labels.shape, ratio=ratio)
    out = work + 1
    out[interior(work, d)] = 0
    return out
