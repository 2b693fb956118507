"""Exact (int64) confusion-matrix accumulation and the semantic segmentation scores built on it.

Ids outside ``0..K-1`` are kept in an extra "outside" row/column instead of being clipped, so the
scores follow mmseg's and ImageNet-S's ``histc`` rule: a prediction outside the class range
costs its GT class a miss but is nobody's false positive, and a GT pixel outside the range
(other than the ignore id, which is dropped) is a false positive for whatever was predicted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def range_hist(pred: np.ndarray, gt: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection, predicted, target) pixel counts per id ``0..bins-1``, as torch.histc gives them.

    Values outside the range are dropped from each histogram separately, exactly like the
    official ImageNet-S ``IoUGPU`` and mmseg's ``intersect_and_union``; counts are int64.
    """
    pred = np.asarray(pred).ravel().astype(np.int64, copy=False)
    gt = np.asarray(gt).ravel().astype(np.int64, copy=False)
    p_in = (pred >= 0) & (pred < bins)
    g_in = (gt >= 0) & (gt < bins)
    area_pred = np.bincount(pred[p_in], minlength=bins).astype(np.int64)
    area_gt = np.bincount(gt[g_in], minlength=bins).astype(np.int64)
    inter = np.bincount(pred[p_in & (pred == gt)], minlength=bins).astype(np.int64)
    return inter, area_pred, area_gt


@dataclass
class Confusion:
    """``matrix[g, p]`` counts pixels with GT id ``g`` and predicted id ``p``; index K = outside 0..K-1."""

    num_classes: int
    matrix: np.ndarray

    @classmethod
    def empty(cls, num_classes: int) -> "Confusion":
        """An all-zero matrix for ids 0..num_classes-1 plus the outside row/column."""
        return cls(num_classes, np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64))

    def update(self, gt: np.ndarray, pred: np.ndarray, ignore_index: int | None = None) -> None:
        """Add one image (any shape, equal shapes); GT pixels equal to ``ignore_index`` are dropped."""
        gt = np.asarray(gt).ravel().astype(np.int64)
        pred = np.asarray(pred).ravel().astype(np.int64)
        if gt.shape != pred.shape:
            raise ValueError(f"gt has {gt.size} pixels, prediction {pred.size}")
        if ignore_index is not None:
            keep = gt != ignore_index
            gt, pred = gt[keep], pred[keep]
        k = self.num_classes
        gt = np.where((gt >= 0) & (gt < k), gt, k)
        pred = np.where((pred >= 0) & (pred < k), pred, k)
        self.matrix += np.bincount(gt * (k + 1) + pred, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)

    def __add__(self, other: "Confusion") -> "Confusion":
        """Counts of both (e.g. two workers' shares of a split)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot add confusion matrices of different sizes")
        return Confusion(self.num_classes, self.matrix + other.matrix)

    @property
    def intersection(self) -> np.ndarray:
        """Pixels predicted as their own GT class, per class."""
        return np.diag(self.matrix)[: self.num_classes].copy()

    @property
    def area_pred(self) -> np.ndarray:
        """Pixels predicted as each class, including those whose GT id is out of range."""
        return self.matrix[:, : self.num_classes].sum(axis=0)

    @property
    def area_gt(self) -> np.ndarray:
        """GT pixels of each class, including those predicted with an out-of-range id."""
        return self.matrix[: self.num_classes, :].sum(axis=1)

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN where a class is neither in the GT nor predicted."""
        inter = self.intersection.astype(np.float64)
        union = (self.area_pred + self.area_gt - self.intersection).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, inter / np.maximum(union, 1), np.nan)

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall in [0, 1]; NaN where the class has no GT pixel."""
        gt = self.area_gt.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gt > 0, self.intersection / np.maximum(gt, 1), np.nan)

    def pixel_accuracy(self) -> float:
        """Correct pixels over GT pixels with an in-range id (mmseg's aAcc)."""
        total = int(self.area_gt.sum())
        return float(self.intersection.sum()) / total if total else float("nan")


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: undefined scores (absent classes, empty buckets) become null."""
    return None if math.isnan(value) else value


def mean_iou(iou: np.ndarray, absent: str = "skip") -> float:
    """Mean of per-class IoUs; ``absent='skip'`` drops NaN classes (mmseg), ``'zero'`` counts them as 0."""
    if absent == "zero":
        return float(np.nan_to_num(iou, nan=0.0).mean()) if iou.size else float("nan")
    if absent != "skip":
        raise ValueError(f"absent must be 'skip' or 'zero', not {absent!r}")
    present = iou[~np.isnan(iou)]
    return float(present.mean()) if present.size else float("nan")
