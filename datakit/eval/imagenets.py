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

from ..imagenets.lists import IGNORE_ID
from .boundary import boundary_map
from .confusion import finite_or_none
from .matching import Match

BUCKETS = ("S", "MS", "ML", "L")
BUCKET_EDGES = (5, 25, 50)  # share <= 5 -> S, <= 25 -> MS, <= 50 -> ML, else L
SUMMARY_KEYS = ("Acc", "mIoU", "mBIoU", "S", "MS", "ML", "L", "BS", "BMS", "BML", "BL", "FMeasure")
FBETA2, F_EPS, IOU_EPS = 0.3, 1e-20, 1e-10


def _zeros(*shape: int) -> np.ndarray:
    """int64 zeros: every count is exact."""
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
        """All-zero counts for ids 0..k-1."""
        return cls(k, *(_zeros(k) for _ in range(6)), *(_zeros(4, k) for _ in range(6)))

    def __iadd__(self, other: "ImageNetSCounts") -> "ImageNetSCounts":
        """Add another image's or worker's counts in place."""
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


def bucket_of_ids(ids: np.ndarray, pixels: np.ndarray, valid: int) -> np.ndarray:
    """Size bucket (0..3 = S, MS, ML, L) of each GT id, -1 for background; shares as float32 torch."""
    share = (pixels.astype(np.float32) * np.float32(100.0)) / np.float32(valid)
    out = []
    for cid, s in zip(ids.tolist(), share.tolist()):
        v = math.ceil(s)
        out.append(-1 if cid == 0 else 0 if v <= BUCKET_EDGES[0] else 1 if v <= BUCKET_EDGES[1] else
                   2 if v <= BUCKET_EDGES[2] else 3)
    return np.array(out, dtype=np.int64)


def size_buckets(gt: np.ndarray) -> dict[int, int]:
    """Bucket of every non-background GT id of one image's valid pixels (``ceil(100 * count / n)``)."""
    if gt.size == 0:
        return {}
    counts = np.bincount(gt)
    ids = np.nonzero(counts)[0]
    buckets = bucket_of_ids(ids, counts[ids], gt.size)
    return {int(c): int(b) for c, b in zip(ids, buckets) if c != 0}


def fmeasure_from_counts(t: int, p: int, tp: int) -> float:
    """Foreground F-measure (beta^2 = 0.3, eps 1e-20: no foreground anywhere gives 0)."""
    recall, precision = tp / (t + F_EPS), tp / (p + F_EPS)
    return (1 + FBETA2) * precision * recall / (FBETA2 * precision + recall + F_EPS)


def fmeasure(pred: np.ndarray, gt: np.ndarray) -> float:
    """F-measure of one image's foreground (id > 0) prediction."""
    return fmeasure_from_counts(int(np.count_nonzero(gt > 0)), int(np.count_nonzero(pred > 0)),
                                int(np.count_nonzero((gt > 0) & (pred > 0))))


@dataclass
class _PerGT:
    """One image's pixels tallied by GT id: every official histogram is a sum of these rows."""

    ids: np.ndarray  # distinct GT ids (valid pixels)
    pixels: np.ndarray  # pixels per GT id
    pred: np.ndarray  # (u, K+1): predicted id per GT id; column K = outside 0..N
    hit: np.ndarray  # pixels predicted as their GT id
    bpred: np.ndarray  # (u, K+2): predicted band value (column 0 unused, K+1 = outside) per GT id
    bgt: np.ndarray  # GT band pixels per GT id
    bhit: np.ndarray  # band pixels whose predicted band value equals the GT's


def _tally(g: np.ndarray, p: np.ndarray, bg: np.ndarray, bp: np.ndarray, k: int) -> _PerGT:
    """Tally valid pixels (GT, prediction, both band maps) by GT id with one pass per quantity."""
    counts = np.bincount(g)
    ids = np.nonzero(counts)[0]
    lut = np.zeros(counts.size, dtype=np.int64)
    lut[ids] = np.arange(ids.size)
    gi, u = lut[g], ids.size
    band = bg > 0
    on = bp > 0  # band value 0 ("not boundary") is never counted: tally only band pixels
    return _PerGT(
        ids, counts[ids],
        np.bincount(gi * (k + 1) + np.minimum(p, k), minlength=u * (k + 1)).reshape(u, k + 1),
        np.bincount(gi[p == g], minlength=u),
        np.bincount(gi[on] * (k + 2) + np.minimum(bp[on], k + 1), minlength=u * (k + 2)).reshape(u, k + 2),
        np.bincount(gi[band], minlength=u),
        np.bincount(gi[band & (bp == bg)], minlength=u),
    )


def _histograms(t: _PerGT, rows: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """(tp, pred, gt, btp, bpred, bgt) over ids 0..N for the pixels of the GT ids in ``rows``."""
    tp, gt, btp, bgt = _zeros(k), _zeros(k), _zeros(k), _zeros(k)
    ids = t.ids[rows]
    inr = ids < k
    np.add.at(tp, ids[inr], t.hit[rows][inr])
    np.add.at(gt, ids[inr], t.pixels[rows][inr])
    np.add.at(btp, ids[inr], t.bhit[rows][inr])
    np.add.at(bgt, ids[inr], t.bgt[rows][inr])
    return tp, t.pred[rows, :k].sum(axis=0), gt, btp, t.bpred[rows, 1 : k + 1].sum(axis=0), bgt


def image_counts(gt: np.ndarray, pred: np.ndarray, num_classes: int, match: Match | None = None,
                 ignore_index: int = IGNORE_ID, what: str = "prediction") -> ImageNetSCounts:
    """The official per-image contribution; ``num_classes`` is N (ids 0..N are scored)."""
    if gt.shape != pred.shape:
        raise ValueError(f"{what} is {pred.shape[1]}x{pred.shape[0]}, ground truth is {gt.shape[1]}x{gt.shape[0]}")
    k = num_classes + 1
    bgt, bpred = boundary_map(gt), boundary_map(pred)
    valid = gt != ignore_index
    g, p = gt[valid].astype(np.int64, copy=False), pred[valid].astype(np.int64, copy=False)
    bg, bp = bgt[valid], bpred[valid]
    if (g.size and int(g.min()) < 0) or (p.size and int(p.min()) < 0):
        raise ValueError(f"{what}: ids must be non-negative")
    if match is not None:
        p, bp = match.apply(p, what), match.apply_boundary(bp, what)
    c = ImageNetSCounts.empty(k)
    if g.size:
        t = _tally(g, p, bg, bp, k)
        all_rows = np.arange(t.ids.size)
        c.tp, c.area_pred, c.area_gt, c.btp, c.barea_pred, c.barea_gt = _histograms(t, all_rows, k)
        bucket = bucket_of_ids(t.ids, t.pixels, g.size)
        for b in sorted(set(bucket.tolist()) - {-1}):
            hists = _histograms(t, np.nonzero((bucket == b) | (t.ids == 0))[0], k)
            for name, h in zip(("size_tp", "size_pred", "size_gt", "size_btp", "size_bpred", "size_bgt"), hists):
                getattr(c, name)[b] = h
        fg_pixels = int(g.size - (t.pixels[0] if t.ids[0] == 0 else 0))
        pred_fg = int(g.size - t.pred[:, 0].sum())
        both_fg = int((t.pixels - t.pred[:, 0])[t.ids > 0].sum())
        c.fmeasure_sum = fmeasure_from_counts(fg_pixels, pred_fg, both_fg)
    label = int(np.argmax(c.area_pred[1:])) + 1 if k > 1 else 0
    c.correct = int(c.area_gt[label] > 0 and c.area_pred[label] > 0)
    c.images = 1
    return c


def _iou(tp: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The official ``TP / (T + P - TP + 1e-10) * 100`` (0 for an id never seen)."""
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
        """Plain JSON: NaN scores become null."""
        return {
            "subset": self.subset,
            "images": self.images,
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "classes": [{"id": i, "name": n, "IoU": finite_or_none(a), "BIoU": finite_or_none(b)}
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
