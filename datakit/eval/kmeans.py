"""MaskContrast's K-means protocol (``segmentation/kmeans.py`` + ``utils/kmeans_utils.py``) in numpy.

1. One prototype per image: pixel embeddings weighted by the saliency inside the salient
   region (``sal * (sal > 0.5)``), summed, L2-normalised.
2. PCA to 32 dimensions with whitening, fitted on the evaluation set itself.
3. K-means into 20 clusters; an image's prediction is ``cluster + 1`` on its salient pixels
   and 0 elsewhere, resized nearest to the GT size.
4. Hungarian matching on pooled pixel IoU (21 = 21), or majority vote otherwise.
5. mIoU over all classes (absent ones count 0), averaged over 5 seeds.
``backend="sklearn"`` runs exactly MaskContrast's calls (``PCA(n_components=32, whiten=True)`` then
``MiniBatchKMeans(n_clusters, batch_size=1000, random_state=seed)`` on the prototypes as given, e.g.
float32), so per-seed numbers equal MaskContrast's with the same scikit-learn; ``numpy`` (the
default, no extra dependency) is full-batch k-means with greedy k-means++ seeding, whose per-seed
numbers can differ slightly. Nearest resizes follow OpenCV's INTER_NEAREST index rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..nearest import resize_nearest

from .confusion import Confusion, mean_iou
from .matching import match_by_iou


@dataclass(frozen=True)
class KMeansProtocol:
    """MaskContrast defaults: 20 clusters, PCA 32 + whitening, seeds 1234..1238, VOC 21 classes."""

    n_clusters: int = 20
    pca_dim: int | None = 32
    whiten: bool = True
    seeds: tuple[int, ...] = (1234, 1235, 1236, 1237, 1238)
    num_classes: int = 21
    ignore_index: int = 255
    threshold: float = 0.5
    max_iter: int = 300
    backend: str = "numpy"  # numpy | sklearn (MaskContrast's MiniBatchKMeans; needs scikit-learn)


@dataclass
class KMeansReport:
    """mIoU (percent) per seed, their mean and standard deviation (population, as numpy's std), and
    per-class IoU averaged over seeds."""

    miou_per_seed: list[float]
    miou: float
    iou: list[float]
    matches: list[list[int]]
    miou_std: float = 0.0


def salient_prototypes(embeddings: np.ndarray, saliency: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N, D) unit prototypes from (N, D, H, W) embeddings and (N, H, W) saliency probabilities."""
    n, d = embeddings.shape[:2]
    weight = (saliency * (saliency > threshold)).reshape(n, -1, 1).astype(np.float64)
    proto = np.matmul(embeddings.reshape(n, d, -1).astype(np.float64), weight)[:, :, 0]
    norm = np.linalg.norm(proto, axis=1, keepdims=True)
    return proto / np.maximum(norm, 1e-12)


def pca(x: np.ndarray, dim: int, whiten: bool = True) -> np.ndarray:
    """scikit-learn's PCA transform: centre, project on the top ``dim`` components, whiten by sqrt(var)."""
    x = np.asarray(x, dtype=np.float64)
    if not 0 < dim <= min(x.shape):
        raise ValueError(f"PCA to {dim} dimensions needs at least {dim} samples and features, got {x.shape}")
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:dim].T
    if whiten:
        var = s[:dim] ** 2 / max(x.shape[0] - 1, 1)
        out = out / np.sqrt(np.maximum(var, 1e-12))
    return out


def _sq_dist(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of every row of x to every centre."""
    d = (x**2).sum(1)[:, None] - 2.0 * x @ centres.T + (centres**2).sum(1)[None, :]
    return np.maximum(d, 0.0)


def kmeanspp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (2 + log k candidates per step, keep the best), as scikit-learn."""
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centres = [x[rng.integers(n)]]
    closest = _sq_dist(x, centres[0][None])[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:
            cand = rng.integers(n, size=trials)
        else:
            cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total).clip(max=n - 1)
        dist = np.minimum(closest[None, :], _sq_dist(x, x[cand]).T)
        best = int(np.argmin(dist.sum(axis=1)))
        centres.append(x[cand[best]])
        closest = dist[best]
    return np.stack(centres)


def kmeans(x: np.ndarray, k: int, seed: int, max_iter: int = 300) -> np.ndarray:
    """Lloyd's k-means from k-means++ seeds; the cluster of each row. Empty clusters keep their centre."""
    if k > x.shape[0]:
        raise ValueError(f"{k} clusters need at least {k} samples, got {x.shape[0]}")
    rng = np.random.default_rng(seed)
    centres = kmeanspp(x, k, rng)
    labels = np.full(x.shape[0], -1)
    for _ in range(max_iter):
        new = np.argmin(_sq_dist(x, centres), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    return labels


def score_clusters(clusters: np.ndarray, foreground: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                   opts: KMeansProtocol) -> tuple[float, np.ndarray, np.ndarray]:
    """Matched mIoU (percent), per-class IoU and the class of each prediction id for one clustering."""
    k = opts.n_clusters + 1
    pooled = np.zeros((k, opts.num_classes), dtype=np.int64)  # prediction id x GT class
    preds = []
    for cluster, fg, gt in zip(clusters, foreground, gts):
        fg = resize_nearest(np.asarray(fg), gt.shape) if fg.shape != gt.shape else np.asarray(fg)
        pred = np.where(fg > 0, int(cluster) + 1, 0)
        valid = (gt != opts.ignore_index) & (gt >= 0) & (gt < opts.num_classes)
        np.add.at(pooled, (pred[valid], gt[valid].astype(np.int64)), 1)
        preds.append((pred, gt))
    cls_of = match_by_iou(pooled)
    conf = Confusion.empty(opts.num_classes)
    for pred, gt in preds:
        conf.update(gt, cls_of[pred], opts.ignore_index)
    iou = np.nan_to_num(conf.iou(), nan=0.0)
    return 100.0 * mean_iou(iou, "zero"), 100.0 * iou, cls_of


def _sklearn():
    """scikit-learn's PCA and MiniBatchKMeans, imported only when the sklearn backend is chosen."""
    try:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.decomposition import PCA
    except ImportError:
        from ..errors import InputError

        raise InputError("the sklearn K-means backend needs scikit-learn: pip install 'datakit[sklearn]'") from None
    return PCA, MiniBatchKMeans


def _clusterer(prototypes: np.ndarray, opts: KMeansProtocol):
    """(features, seed -> cluster of each row) for the chosen backend."""
    if opts.backend == "sklearn":
        pca_cls, kmeans_cls = _sklearn()
        x = np.asarray(prototypes)
        if opts.pca_dim:
            x = pca_cls(n_components=opts.pca_dim, whiten=opts.whiten).fit_transform(x)
        return lambda seed: kmeans_cls(n_clusters=opts.n_clusters, batch_size=1000, random_state=seed).fit_predict(x)
    if opts.backend != "numpy":
        raise ValueError(f"K-means backend must be 'numpy' or 'sklearn', not {opts.backend!r}")
    x = pca(prototypes, opts.pca_dim, opts.whiten) if opts.pca_dim else np.asarray(prototypes, dtype=np.float64)
    return lambda seed: kmeans(x, opts.n_clusters, seed, opts.max_iter)


def kmeans_protocol(prototypes: np.ndarray, foreground: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                    opts: KMeansProtocol = KMeansProtocol()) -> KMeansReport:
    """Cluster one prototype per image and score it as MaskContrast does, once per seed."""
    if not len(prototypes) == len(foreground) == len(gts):
        raise ValueError("prototypes, foreground masks and GT maps must have one entry per image")
    cluster = _clusterer(prototypes, opts)
    mious, ious, matches = [], [], []
    for seed in opts.seeds:
        miou, iou, cls_of = score_clusters(np.asarray(cluster(seed)), foreground, gts, opts)
        mious.append(miou)
        ious.append(iou)
        matches.append(cls_of.tolist())
    return KMeansReport(mious, float(np.mean(mious)), np.mean(ious, axis=0).tolist(), matches, float(np.std(mious)))
