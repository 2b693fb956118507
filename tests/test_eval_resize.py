"""Nearest resize parity with OpenCV INTER_NEAREST (what MaskContrast's K-means scoring uses)."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.eval.kmeans import KMeansProtocol, score_clusters
from datakit.nearest import nearest_index, resize_nearest

# (src, dst) -> OpenCV's source indices, recorded from cv2.resize (these pairs are where src/dst and
# 1/(dst/src) round differently, so floor(i * src / dst) picks another pixel)
CV2_ROWS = {
    (6, 34): [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5],
    (9, 51): [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5,
              6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8],
    (10, 74): [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4,
               4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9,
               9, 9, 9, 9],
}


@pytest.mark.parametrize("pair", sorted(CV2_ROWS))
def test_recorded_opencv_indices(pair):
    assert nearest_index(*pair).tolist() == CV2_ROWS[pair]


def test_exhaustive_table_against_opencv():
    """Every (src, dst) pair of sizes 1..128 in both directions, against cv2 itself."""
    cv2 = pytest.importorskip("cv2")
    bad = []
    for src in range(1, 129):
        row = np.arange(src, dtype=np.float32)[None]
        for dst in range(1, 129):
            ref = cv2.resize(row, (dst, 1), interpolation=cv2.INTER_NEAREST)[0].astype(np.int64)
            if not np.array_equal(resize_nearest(np.arange(src)[None], (1, dst))[0], ref):
                bad.append((src, dst))
    assert not bad, f"{len(bad)} pairs differ from OpenCV, first {bad[:5]}"
    grid = np.arange(37 * 53, dtype=np.float32).reshape(37, 53)
    for shape in [(48, 48), (375, 500), (13, 7), (37, 53)]:
        ref = cv2.resize(grid, shape[::-1], interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(resize_nearest(grid, shape), ref)


def test_kmeans_scoring_at_48px_matches_a_cv2_resize():
    """MaskContrast scores 48 px foreground maps resized nearest (cv2) to each GT's size."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    opts = KMeansProtocol(n_clusters=4, num_classes=5)
    fgs, gts = [], []
    for i in range(12):
        fg = np.zeros((48, 48), np.uint8)
        y, x = rng.integers(0, 24, 2)
        fg[y : y + 20, x : x + 17] = 1
        h, w = int(rng.integers(90, 200)), int(rng.integers(90, 200))
        gt = cv2.resize(fg * (i % 4 + 1), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int64)
        gt[rng.random(gt.shape) < 0.02] = 255
        fgs.append(fg)
        gts.append(gt)
    clusters = np.array([i % 4 for i in range(12)])
    ours = score_clusters(clusters, fgs, gts, opts)[0]
    resized = [cv2.resize(f, (g.shape[1], g.shape[0]), interpolation=cv2.INTER_NEAREST) for f, g in zip(fgs, gts)]
    ref = score_clusters(clusters, resized, gts, opts)[0]
    assert ours == pytest.approx(ref, abs=1e-9)
