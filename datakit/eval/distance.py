"""ImageNet-S distance matching (LUSSeg/PASS ``distance_matching/``): no clustering, only a backbone.

Bank: for every train-semi image and every label present except ignore (background 0
included), ``mean(feature * mask)`` over all pixels, with the mask resized nearest to the
feature size. Inference: L2-normalised pixel features vote for classes with DINO's weighted
kNN (k = 10, weight exp(similarity / T), T = 0.07) against the L2-normalised bank; the arg-max
class map is upsampled nearest to the image size. Backbone features are upsampled x4 bilinearly
first in PASS (``upsample_features``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KnnOptions:
    """PASS defaults: k = 10 neighbours, T = 0.07; queries are scored in chunks of pixels."""

    k: int = 10
    temperature: float = 0.07
    ignore_index: int = 1000
    chunk: int = 65536


def _torch():
    """torch, imported only when a torch protocol runs (the data commands do not need it)."""
    import torch

    return torch


def upsample_features(features, factor: int = 4):
    """(N, C, h, w) features upsampled ``factor`` times bilinearly (PASS: ResNet stride 32 -> 8)."""
    torch = _torch()
    f = torch.as_tensor(features, dtype=torch.float32)
    return torch.nn.functional.interpolate(f, size=(f.shape[2] * factor, f.shape[3] * factor), mode="bilinear")


def class_embeddings(features, masks, ignore_index: int = 1000):
    """Bank of (M, C) embeddings and (M,) labels from (N, C, h, w) features and (N, H, W) masks."""
    torch = _torch()
    f = torch.as_tensor(features, dtype=torch.float32)
    m = torch.as_tensor(np.asarray(masks).astype(np.int64))
    n, c, h, w = f.shape
    m = torch.nn.functional.interpolate(m[:, None].float(), size=(h, w), mode="nearest").long().view(n, -1)
    f = f.view(n, c, -1)
    embs, labels = [], []
    for i in range(n):
        for v in torch.unique(m[i]).tolist():
            if v == ignore_index:
                continue
            embs.append((f[i] * (m[i] == v).float()).mean(dim=1))
            labels.append(v)
    if not embs:
        return torch.zeros((0, c)), torch.zeros((0,), dtype=torch.int64)
    return torch.stack(embs), torch.tensor(labels, dtype=torch.int64)


def knn_classify(bank, bank_labels, queries, num_classes: int, opts: KnnOptions = KnnOptions()):
    """Class of each (P, C) query by weighted kNN on cosine similarity; ties go to the lowest id."""
    torch = _torch()
    bank = torch.nn.functional.normalize(torch.as_tensor(bank, dtype=torch.float32), dim=1)
    q = torch.nn.functional.normalize(torch.as_tensor(queries, dtype=torch.float32), dim=1)
    labels = torch.as_tensor(bank_labels, dtype=torch.int64)
    k = min(opts.k, bank.shape[0])
    out = []
    for start in range(0, q.shape[0], opts.chunk):
        sim = q[start : start + opts.chunk] @ bank.T
        top, idx = sim.topk(k, dim=1, largest=True, sorted=True)
        votes = torch.zeros(sim.shape[0], num_classes)
        votes.scatter_add_(1, labels[idx], (top / opts.temperature).exp())
        out.append(votes.argmax(dim=1))
    return torch.cat(out) if out else torch.zeros((0,), dtype=torch.int64)


def distance_matching(features, bank, bank_labels, size: tuple[int, int], num_classes: int,
                      opts: KnnOptions = KnnOptions()) -> np.ndarray:
    """(H, W) int64 class map of one image from its (C, h, w) (already upsampled) features."""
    torch = _torch()
    f = torch.as_tensor(features, dtype=torch.float32)
    c, h, w = f.shape
    pred = knn_classify(bank, bank_labels, f.view(c, -1).T, num_classes, opts).view(1, 1, h, w).float()
    pred = torch.nn.functional.interpolate(pred, size=tuple(size), mode="nearest")
    return pred[0, 0].long().numpy()
