"""The boundary band of the official ImageNet-S mBIoU (Boundary IoU, Cheng et al. 2021).

Official rule (PASS/ImageNet-S ``mask_to_boundary`` with ``dilation_ratio=0.03``): for each id,
erode its binary mask ``d = max(1, round(0.03 * diagonal))`` times with a 3x3 kernel after
zero-padding the image by one pixel, and keep mask minus erosion. That equals: a pixel is in
its id's band unless every pixel within Chebyshev distance ``d`` lies inside the image and has
the same id. We compute it for all ids at once in O(pixels), whatever ``d`` is.
"""

from __future__ import annotations

import numpy as np

BOUNDARY_RATIO = 0.03


def band_width(height: int, width: int, ratio: float = BOUNDARY_RATIO) -> int:
    """``d``: Python's round (half to even) of ``ratio`` times the diagonal, at least 1."""
    return max(1, int(round(ratio * float(np.sqrt(height**2 + width**2)))))


def _box_any(edges: np.ndarray, h: int, w: int, d: int, rows: int, cols: int) -> np.ndarray:
    """For interior pixels (i, j): does ``edges`` hold a 1 in rows i-d..i-d+rows-1, cols j-d..j-d+cols-1?"""
    integral = np.zeros((edges.shape[0] + 1, edges.shape[1] + 1), dtype=np.int32)
    np.cumsum(np.cumsum(edges, axis=0, dtype=np.int32), axis=1, out=integral[1:, 1:])
    r0, c0 = slice(0, h - 2 * d), slice(0, w - 2 * d)
    r1, c1 = slice(rows, rows + h - 2 * d), slice(cols, cols + w - 2 * d)
    return (integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]) > 0


def interior(labels: np.ndarray, d: int) -> np.ndarray:
    """True where the (2d+1)-square around a pixel is inside the image and holds a single id.

    A square holds two ids exactly when it holds two differing 4-neighbours, so we count
    horizontal and vertical label changes inside each square with integral images.
    """
    h, w = labels.shape
    inside = np.zeros((h, w), dtype=bool)
    if h <= 2 * d or w <= 2 * d:
        return inside
    horizontal = labels[:, :-1] != labels[:, 1:]  # pair (i, j)-(i, j+1) lies in the square if j in j0-d..j0+d-1
    vertical = labels[:-1, :] != labels[1:, :]
    change = _box_any(horizontal, h, w, d, 2 * d + 1, 2 * d) | _box_any(vertical, h, w, d, 2 * d, 2 * d + 1)
    inside[d : h - d, d : w - d] = ~change
    return inside


def boundary_map(labels: np.ndarray, ratio: float = BOUNDARY_RATIO) -> np.ndarray:
    """``labels + 1`` on band pixels and 0 elsewhere (int64), as ``get_boundary_mask(x + 1)``."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    work = labels.astype(np.int64, copy=False)
    d = band_width(*labels.shape, ratio=ratio)
    out = work + 1
    out[interior(work, d)] = 0
    return out
