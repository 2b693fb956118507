"""MaskContrast K-means protocol, linear probe and ImageNet-S distance matching on constructed features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datakit.eval.distance import KnnOptions, class_embeddings, distance_matching, knn_classify, upsample_features
from datakit.eval.kmeans import KMeansProtocol, kmeans_protocol, pca, resize_nearest, salient_prototypes
from datakit.eval.probe import ProbeOptions, evaluate_probe, train_probe


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread avoids spin-wait stalls on a shared two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _voc_like(n_per_class: int = 4, classes: int = 20, dim: int = 48, seed: int = 0):
    """Images with one salient object each; its pixel embeddings point at the class's direction."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    emb, sal, gts = [], [], []
    for c in range(classes):
        for _ in range(n_per_class):
            s = np.zeros((8, 8))
            y, x = rng.integers(0, 4, size=2)
            s[y : y + 4, x : x + 4] = rng.uniform(0.6, 1.0, size=(4, 4))
            s[0, 7] = 0.3  # below the threshold: not salient
            # salient pixels: the class direction plus a little noise inside the span of the class
            # directions (20 classes span 19 of the 32 PCA dimensions; whitening would blow noise in
            # the other dimensions up to unit variance); the rest: strong noise the protocol must ignore
            wobble = (rng.normal(scale=0.05, size=(16, classes)) @ centres).T.reshape(dim, 4, 4)
            e = rng.normal(scale=3.0, size=(dim, 8, 8))
            e[:, y : y + 4, x : x + 4] = centres[c][:, None, None] + wobble
            gt = resize_nearest((s > 0.5).astype(np.int64) * (c + 1), (16, 12))
            gt[0, :] = 255  # an ignored row
            emb.append(e)
            sal.append(s)
            gts.append(gt)
    return np.stack(emb), np.stack(sal), gts


def test_kmeans_protocol_on_separable_features_gives_100():
    emb, sal, gts = _voc_like()
    protos = salient_prototypes(emb, sal)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0)
    rep = kmeans_protocol(protos, list(sal > 0.5), gts, KMeansProtocol())
    assert len(rep.miou_per_seed) == 5
    assert rep.miou_per_seed == pytest.approx([100.0] * 5)
    assert rep.miou == pytest.approx(100.0)
    # more clusters than classes: majority vote still labels every split cluster correctly
    rep = kmeans_protocol(protos, list(sal > 0.5), gts, KMeansProtocol(n_clusters=25, seeds=(1,)))
    assert rep.miou == pytest.approx(100.0)


def test_kmeans_protocol_scores_a_confused_clustering_below_100():
    emb, sal, gts = _voc_like(seed=2)
    protos = salient_prototypes(emb, sal)
    rep = kmeans_protocol(protos, list(sal > 0.5), gts, KMeansProtocol(n_clusters=10, seeds=(0,)))
    assert 0 < rep.miou < 100  # 10 clusters cannot separate 20 classes


def test_pca_whitening_gives_unit_variance():
    x = np.random.default_rng(0).normal(size=(200, 40)) * np.linspace(1, 10, 40)
    y = pca(x, 32)
    assert y.shape == (200, 32)
    np.testing.assert_allclose(y.var(axis=0, ddof=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-9)


def test_resize_nearest_uses_floor_indexing():
    a = np.arange(4).reshape(2, 2)
    np.testing.assert_array_equal(resize_nearest(a, (4, 4)), [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    np.testing.assert_array_equal(resize_nearest(np.arange(6)[None], (1, 4)), [[0, 1, 3, 4]])


def test_linear_probe_learns_separable_features(one_thread):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(6, 8, 8))
    labels[:, 0, 0] = 255
    feats = np.eye(4)[np.clip(labels, 0, 3)].transpose(0, 3, 1, 2) * 2.0 + rng.normal(scale=0.1, size=(6, 4, 8, 8))
    head = train_probe(feats, labels, 4, ProbeOptions(epochs=40, batch_size=2, decay_epochs=(30,)))
    rep = evaluate_probe(head, feats, labels, 4)
    assert rep.metrics["mIoU"] == pytest.approx(100.0)
    assert rep.metrics["aAcc"] == pytest.approx(100.0)


def test_knn_vote_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    labels = torch.tensor([1, 2, 2])
    q = torch.tensor([[1.0, 0.1]])
    # k=3: sims 0.995, 0.855, 0.0995 -> class 2 votes exp(.855/T)+exp(.0995/T) < class 1 exp(.995/T)
    assert knn_classify(bank, labels, q, 3, KnnOptions(k=3)).tolist() == [1]
    # a high temperature flattens the weights: two neighbours beat one
    assert knn_classify(bank, labels, q, 3, KnnOptions(k=3, temperature=100.0)).tolist() == [2]


def test_distance_matching_on_constructed_embeddings(one_thread):
    rng = np.random.default_rng(5)
    dirs = np.eye(6)[:3] * 3.0  # background 0, classes 1 and 2
    masks = np.zeros((4, 16, 16), dtype=np.int64)
    masks[:, 4:12, 4:12] = np.array([1, 2, 1, 2])[:, None, None]
    masks[:, :, :2] = 1000
    feats = dirs[masks.clip(max=2)].transpose(0, 3, 1, 2) + rng.normal(scale=0.05, size=(4, 6, 16, 16))
    bank, bank_labels = class_embeddings(feats[:, :, ::2, ::2], masks)  # features at half resolution
    assert sorted(set(bank_labels.tolist())) == [0, 1, 2]  # background kept, ignore skipped
    assert bank.shape == (8, 6)
    test_mask = np.zeros((16, 16), dtype=np.int64)
    test_mask[2:10, 6:14] = 2
    test_feat = dirs[test_mask].transpose(2, 0, 1) + rng.normal(scale=0.05, size=(6, 16, 16))
    pred = distance_matching(test_feat, bank, bank_labels, (32, 32), 3)
    np.testing.assert_array_equal(pred, resize_nearest(test_mask, (32, 32)))
    assert upsample_features(feats[:, :, ::4, ::4]).shape == (4, 6, 16, 16)
