"""The official ImageNet-S evaluator (LUSSeg/ImageNet-S ``evaluator.py``) reproduced on CPU.

Per image, as the official: boundary bands on the whole image (before dropping ignore pixels),
then drop GT == 1000, then apply the match (boundaries mapped v+1 -> match[v]+1); histograms over
ids 0..N (background counted; ids outside are dropped, as ``torch.histc``); size buckets
S/MS/ML/L by ``ceil(100 * share)`` in float32; F-measure with beta^2 = 0.3; image accuracy of the
most-predicted foreground class. Counts accumulate in int64 (the official uses float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .boundary import boundary_map
from .confusion import range_hist
from .matching import Match

IGNORE_ID = 1000
BUCKETS = ("S", "MS", "ML", "L")
BUCKET_EDGES = (5, 25, 50)  # share <= 5 -> S, <= 25 -> MS, <= 50 -> ML, else L
SUMMARY_KEYS = ("Acc", "mIoU", "mBIoU", "S", "MS", "ML", "L", "BS", "BMS", "BML", "BL", "FMeasure")
FBETA2, F_EPS, IOU_EPS = 0.3, 1e-20, 1e-10


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.int64)


@dataclass
class ImageNetSCounts:
    """Everything the official evaluator accumulates, for K = N + 1 ids; addable across workers."""

    k: int
    tp: np.ndarray
    area_pred: np.ndarray
    area_gt: np.ndarray
    btp: np.ndarray
    barea_pred: np.ndarray
    barea_gt: np.ndarray
    size_tp: np.ndarray  # (4, K) rows in BUCKETS order
    size_pred: np.ndarray
    size_gt: np.ndarray
    size_btp: np.ndarray
    size_bpred: np.ndarray
    size_bgt: np.ndarray
    fmeasure_sum: float = 0.0
    correct: int = 0
    images: int = 0

    @classmethod
    def empty(cls, k: int) -> "ImageNetSCounts":
        return cls(k, *(_zeros(k) for _ in range(6)), *(_zeros(4, k) for _ in range(6)))

    def __iadd__(self, other: "ImageNetSCounts") -> "ImageNetSCounts":
        if other.k != self.k:
            raise ValueError("cannot add counts of different class counts")
        for name in ARRAY_FIELDS:
            getattr(self, name).__iadd__(getattr(other, name))
        self.fmeasure_sum += other.fmeasure_sum
        self.correct += other.correct
        self.images += other.images
        return self


ARRAY_FIELDS = ("tp", "area_pred", "area_gt", "btp", "barea_pred", "barea_gt",
                "size_tp", "size_pred", "size_gt", "size_btp", "size_bpred", "size_bgt")


def size_buckets(gt: np.ndarray) -> dict[int, int]:
    """Bucket (0..3) of every non-background GT id, by ``ceil(100 * count / n)`` in float32."""
    if gt.size == 0:
        return {}
    counts = np.bincount(gt)
    ids = np.nonzero(counts)[0]
    ids = ids[ids != 0]
    share = (counts[ids].astype(np.float32) * np.float32(100.0)) / np.float32(gt.size)
    out = {}
    for c, s in zip(ids.tolist(), share.tolist()):
        v = math.ceil(s)
        out[c] = 0 if v <= BUCKET_EDGES[0] else 1 if v <= BUCKET_EDGES[1] else 2 if v <= BUCKET_EDGES[2] else 3
    return out


def fmeasure(pred: np.ndarray, gt: np.ndarray) -> float:
    """Foreground F-measure of one image (beta^2 = 0.3, eps 1e-20: no foreground anywhere gives 0)."""
    t = float(np.count_nonzero(gt > 0))
    p = float(np.count_nonzero(pred > 0))
    tp = float(np.count_nonzero((gt > 0) & (pred > 0)))
    recall, precision = tp / (t + F_EPS), tp / (p + F_EPS)
    return (1 + FBETA2) * precision * recall / (FBETA2 * precision + recall + F_EPS)


def image_counts(gt: np.ndarray, pred: np.ndarray, num_classes: int, match: Match | None = None,
                 ignore_index: int = IGNORE_ID, what: str = "prediction") -> ImageNetSCounts:
    """The official per-image contribution; ``num_classes`` is N (ids 0..N are scored)."""
    if gt.shape != pred.shape:
        raise ValueError(f"{what} is {pred.shape[1]}x{pred.shape[0]}, ground truth is {gt.shape[1]}x{gt.shape[0]}")
    k = num_classes + 1
    bgt, bpred = boundary_map(gt), boundary_map(pred)
    valid = gt != ignore_index
    g, p, bg, bp = gt[valid].astype(np.int64), pred[valid].astype(np.int64), bgt[valid], bpred[valid]
    if match is not None:
        p, bp = match.apply(p, what), match.apply_boundary(bp, what)
    c = ImageNetSCounts.empty(k)
    c.tp, c.area_pred, c.area_gt = range_hist(p, g, k)
    bi, bo, bt = range_hist(bp, bg, k + 1)
    c.btp, c.barea_pred, c.barea_gt = bi[1:], bo[1:], bt[1:]
    buckets = size_buckets(g)
    if buckets:
        lut = np.full(int(g.max()) + 1, -1, dtype=np.int64)
        for cls, b in buckets.items():
            lut[cls] = b
        pixel_bucket = lut[g]
        background = g == 0
        for b in sorted(set(buckets.values())):
            sel = background | (pixel_bucket == b)
            c.size_tp[b], c.size_pred[b], c.size_gt[b] = range_hist(p[sel], g[sel], k)
            bi, bo, bt = range_hist(bp[sel], bg[sel], k + 1)
            c.size_btp[b], c.size_bpred[b], c.size_bgt[b] = bi[1:], bo[1:], bt[1:]
    c.fmeasure_sum = fmeasure(p, g)
    label = int(np.argmax(c.area_pred[1:])) + 1 if k > 1 else 0
    c.correct = int(c.area_gt[label] > 0 and c.area_pred[label] > 0)
    c.images = 1
    return c


def _iou(tp: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return tp / (pred + gt - tp + IOU_EPS) * 100.0


def _bucket_mean(tp: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean IoU over the ids that occur in the bucket's GT; NaN when none does (official: nan)."""
    present = gt > 0
    return float(_iou(tp, pred, gt)[present].mean()) if present.any() else float("nan")


@dataclass
class ImageNetSReport:
    """The official summary (percentages), per-class IoU/BIoU, and what was evaluated."""

    subset: int
    metrics: dict[str, float]
    iou: list[float]
    biou: list[float]
    class_names: list[str]
    images: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "subset": self.subset,
            "images": self.images,
            "metrics": {k: clean(v) for k, v in self.metrics.items()},
            "classes": [{"id": i, "name": n, "IoU": clean(a), "BIoU": clean(b)}
                        for i, (n, a, b) in enumerate(zip(self.class_names, self.iou, self.biou))],
            "notes": self.notes,
        }


def summarize(c: ImageNetSCounts, subset: int, class_names: list[str], notes: list[str] | None = None) -> ImageNetSReport:
    """Final numbers as the official prints them: means over all N+1 ids, buckets over present ids."""
    iou = _iou(c.tp, c.area_pred, c.area_gt)
    biou = _iou(c.btp, c.barea_pred, c.barea_gt)
    n = max(c.images, 1)
    m = {"Acc": 100.0 * c.correct / n, "mIoU": float(iou.mean()), "mBIoU": float(biou.mean())}
    for i, name in enumerate(BUCKETS):
        m[name] = _bucket_mean(c.size_tp[i], c.size_pred[i], c.size_gt[i])
    for i, name in enumerate(BUCKETS):
        m["B" + name] = _bucket_mean(c.size_btp[i], c.size_bpred[i], c.size_bgt[i])
    m["FMeasure"] = 100.0 * c.fmeasure_sum / n
    metrics = {k: m[k] for k in SUMMARY_KEYS}
    return ImageNetSReport(subset, metrics, iou.tolist(), biou.tolist(), class_names, c.images, notes or [])
