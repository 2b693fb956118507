"""Matching cluster ids to classes: Hungarian (scipy) or majority vote, and ``match.json`` files.

Two scores: pixel IoU pooled over the set (MaskContrast) and image-level co-occurrence (the
official ImageNet-S ``match.py``). Co-occurrence counts are integers, and ties between equally
good assignments are common there (clusters and classes that never meet), so the tie rule
matters for the final mIoU. Two exact rules:

- ``official`` (default): the official costs ``float32(1 - count / images)`` on an N x N matrix,
  solved in the ``munkres`` package's own order (``munkres.py``), so the match is the one
  ``match.py`` writes;
- ``identity``: among all optimal assignments, the one with the most identity pairs (cluster i ->
  class i), any remaining tie resolved by scipy's deterministic solver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import InputError
from ..io import atomic_write_bytes
from .munkres import munkres_assign

TIES = ("official", "identity")


@dataclass(frozen=True)
class Match:
    """A map from predicted (cluster) ids to class ids; unmapped ids are an error, as officially."""

    table: Mapping[int, int]

    def apply(self, values: np.ndarray, what: str = "prediction") -> np.ndarray:
        """Map every (non-negative) value; an id the match does not cover raises InputError naming it."""
        values = np.asarray(values, dtype=np.int64)
        if values.size == 0:
            return values.copy()
        top = int(values.max())
        lut = np.full(top + 1, -1, dtype=np.int64)
        for k, v in self.table.items():
            if 0 <= k <= top:
                lut[k] = v
        mapped = lut[values]
        if (mapped < 0).any():
            missing = np.unique(values[mapped < 0])
            raise InputError(f"{what}: ids {missing[:8].tolist()} are not in the match file")
        return mapped

    def apply_boundary(self, band: np.ndarray, what: str = "prediction") -> np.ndarray:
        """Band values are id + 1 (0 = not boundary): map v + 1 to match[v] + 1."""
        out = np.zeros_like(band, dtype=np.int64)
        on = band > 0
        out[on] = self.apply(band[on] - 1, what) + 1
        return out

    def to_json(self) -> dict[str, int]:
        """The official match.json object: string keys, sorted by id."""
        return {str(k): int(v) for k, v in sorted(self.table.items())}


def load_match(path: str | Path) -> Match:
    """Read an official-style ``match.json`` (string keys)."""
    try:
        obj = json.loads(Path(path).read_text())
        table = {int(k): int(v) for k, v in obj.items()}
    except FileNotFoundError:
        raise InputError(f"match file not found: {path}") from None
    except (ValueError, AttributeError, TypeError) as err:
        raise InputError(f"{path}: not a match file of id -> id ({err})") from None
    if any(k < 0 or v < 0 for k, v in table.items()):
        raise InputError(f"{path}: match ids must be non-negative")
    return Match(table)


def save_match(match: Match, path: str | Path) -> None:
    """Write ``match.json`` atomically, in the official format (string keys)."""
    atomic_write_bytes(Path(path), json.dumps(match.to_json()).encode())


def assign_max(score: np.ndarray) -> np.ndarray:
    """Column chosen for each row by a maximum-score assignment (-1 for rows left unassigned)."""
    rows, cols = linear_sum_assignment(score, maximize=True)
    out = np.full(score.shape[0], -1, dtype=np.int64)
    out[rows] = cols
    return out


def assign_max_int(count: np.ndarray) -> np.ndarray:
    """``assign_max`` for integer scores with the identity-first tie rule (exact in float64)."""
    count = np.asarray(count, dtype=np.int64)
    n = min(count.shape)
    if count.size and int(count.max()) * (n + 1) + n >= 2**53:
        raise ValueError("counts too large for an exact tie-broken assignment")
    bonus = np.zeros(count.shape, dtype=np.int64)
    bonus[np.arange(n), np.arange(n)] = 1  # one diagonal pair is worth less than one count
    return assign_max((count * (n + 1) + bonus).astype(np.float64))


def iou_matrix(confusion: np.ndarray) -> np.ndarray:
    """IoU of every (cluster, class) pair from a clusters x classes pixel count matrix."""
    confusion = np.asarray(confusion, dtype=np.int64)
    union = confusion.sum(axis=1, keepdims=True) + confusion.sum(axis=0, keepdims=True) - confusion
    return confusion / np.maximum(union, 1)


def match_by_iou(confusion: np.ndarray) -> np.ndarray:
    """MaskContrast: Hungarian on ``n_pixels - IoU`` when clusters == classes, else majority vote.

    ``confusion[i, j]`` = pixels of cluster i with GT class j (ignored pixels already dropped).
    Returns the class of each cluster. Majority vote gives each cluster its best-IoU class
    (first one on ties, as numpy's argmax).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    iou = iou_matrix(confusion)
    if confusion.shape[0] == confusion.shape[1]:
        rows, cols = linear_sum_assignment(float(confusion.sum()) - iou)
        out = np.empty(confusion.shape[0], dtype=np.int64)
        out[rows] = cols
        return out
    return np.argmax(iou, axis=1).astype(np.int64)


def cooccurrence(pairs: Iterable[tuple[Iterable[int], Iterable[int]]], n_clusters: int, n_classes: int) -> tuple[np.ndarray, int]:
    """Images where cluster i+1 and class j+1 both occur: (count matrix, number of images).

    ``pairs`` holds, per image, (GT ids, predicted ids) present after dropping ignored pixels;
    id 0 (background) and ids beyond the matrix are skipped, as the official ``match.py``.
    """
    count = np.zeros((n_clusters, n_classes), dtype=np.int64)
    images = 0
    for gt_ids, pred_ids in pairs:
        images += 1
        g = np.array(sorted({int(v) - 1 for v in gt_ids if 1 <= int(v) <= n_classes}), dtype=np.int64)
        p = np.array(sorted({int(v) - 1 for v in pred_ids if 1 <= int(v) <= n_clusters}), dtype=np.int64)
        if g.size and p.size:
            count[np.ix_(p, g)] += 1
    return count, images


def official_costs(count: np.ndarray, images: int) -> np.ndarray:
    """``match.py``'s cost matrix: square (missing clusters never co-occur), ``1 - count / images``
    computed in float64 and stored in float32, as ``hungarian.py`` does."""
    n = max(count.shape)
    square = np.zeros((n, n), dtype=np.int64)
    square[: count.shape[0], : count.shape[1]] = count
    return (1.0 - square.astype(np.float64) / max(images, 1)).astype(np.float32).astype(np.float64)


def _hungarian(count: np.ndarray, ties: str, images: int | None) -> np.ndarray:
    """Class column of each cluster row under the chosen tie rule."""
    if ties == "identity":
        return assign_max_int(count)
    if ties != "official":
        raise InputError(f"unknown tie rule {ties!r}; choose {' or '.join(TIES)}")
    if images is None:
        raise ValueError("official ties need the number of images the counts come from")
    cols = munkres_assign(official_costs(count, images))[: count.shape[0]]
    return np.where(cols < count.shape[1], cols, -1)


def match_by_cooccurrence(count: np.ndarray, method: str = "auto", ties: str = "identity",
                          images: int | None = None) -> Match:
    """Official ImageNet-S matching from a clusters x classes co-occurrence count; 0 -> 0 added.

    ``auto``: Hungarian when there are as many clusters as classes, majority vote otherwise.
    Majority vote maps each cluster to the class it meets in most images (lowest class id on
    ties) and a cluster that meets no class to 0. Hungarian leaves surplus clusters unmatched,
    so it is only chosen for ``clusters <= classes``. ``ties`` picks among equally good Hungarian
    matches: ``official`` (``match.py``'s munkres order; needs ``images``) or ``identity``.
    """
    count = np.asarray(count, dtype=np.int64)
    n_clusters, n_classes = count.shape
    if method == "auto":
        method = "hungarian" if n_clusters == n_classes else "majority"
    if method == "hungarian":
        if n_clusters > n_classes:
            raise InputError(f"{n_clusters} clusters cannot be matched one-to-one to {n_classes} classes; use majority vote")
        cols = _hungarian(count, ties, images)
    elif method == "majority":
        cols = np.where(count.max(axis=1) > 0, np.argmax(count, axis=1), -1) if n_classes else np.full(n_clusters, -1)
    else:
        raise InputError(f"unknown matching method {method!r}; choose auto, hungarian or majority")
    table = {0: 0}
    table.update({i + 1: int(c) + 1 for i, c in enumerate(cols)})
    return Match(table)
