"""``match imagenets --ties official``: equal optima resolved exactly as the official match.py (munkres)."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.eval.matching import cooccurrence, match_by_cooccurrence
from datakit.eval.munkres import munkres_assign


def official_match(gts: list[list[int]], preds: list[list[int]], n: int) -> dict[int, int]:
    """A transcription of ImageNet-S ``evaluation/hungarian.py`` (ids already minus one, background dropped)."""
    munkres = pytest.importorskip("munkres")
    matrix = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(n):
            both = sum(1 for g, p in zip(gts, preds) if i in p and j in g)
            matrix[i][j] = 1.0 - 1.0 * both / len(gts)
    return {r + 1: c + 1 for r, c in munkres.Munkres().compute(matrix.tolist())}


def test_a_recorded_tie_follows_munkres():
    """Cluster 1 meets nothing: munkres gives it class 4 (and cluster 4 class 1), not the identity."""
    count = np.array([[0, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    official = match_by_cooccurrence(count, "hungarian", "official", images=7)
    assert official.table == {0: 0, 1: 4, 2: 2, 3: 3, 4: 1}
    assert match_by_cooccurrence(count, "hungarian", "identity").table == {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}


def test_solver_equals_the_munkres_package_on_tie_heavy_matrices():
    munkres = pytest.importorskip("munkres")
    rng = np.random.default_rng(0)
    for trial in range(150):
        rows = int(rng.integers(1, 25))
        cols = rows if trial % 3 else int(rng.integers(1, 25))
        count = rng.integers(0, 4, size=(rows, cols)) * (rng.random((rows, cols)) < 0.3)
        cost = (1.0 - count / int(rng.integers(1, 40))).astype(np.float32)
        expect = np.full(rows, -1)
        for r, c in munkres.Munkres().compute(cost.tolist()):
            expect[r] = c
        assert munkres_assign(cost).tolist() == expect.tolist(), trial


@pytest.mark.parametrize("seed", range(40))
def test_image_level_trials_match_the_official_tool(seed):
    """Random per-image GT and cluster sets (S50-sized): the match equals match.py's in every trial."""
    rng = np.random.default_rng(seed)
    n, images = 12, int(rng.integers(8, 30))
    perm = rng.permutation(n) + 1
    gt_sets, pred_sets = [], []
    for _ in range(images):
        classes = set(rng.choice(np.arange(1, n + 1), size=int(rng.integers(1, 3)), replace=False).tolist())
        clusters = {int(perm[c - 1]) for c in classes if rng.random() < 0.8}
        if rng.random() < 0.3:
            clusters.add(int(rng.integers(1, n + 1)))
        gt_sets.append(sorted({0} | classes))
        pred_sets.append(sorted({0} | clusters))
    count, seen = cooccurrence(zip(gt_sets, pred_sets), n, n)
    ours = match_by_cooccurrence(count, "hungarian", "official", images=seen)
    expect = official_match([[g - 1 for g in s if g] for s in gt_sets], [[p - 1 for p in s if p] for s in pred_sets], n)
    assert ours.table == {0: 0, **expect}


def test_unknown_tie_rule_is_one_line(tmp_path):
    from datakit.errors import InputError
    from datakit.eval.runner import match_imagenets

    with pytest.raises(InputError, match="tie rule"):
        match_imagenets(str(tmp_path), str(tmp_path), 50, ties="random")
