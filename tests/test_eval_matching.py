"""Hungarian and majority-vote matching of cluster ids to classes, and match.json files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datakit.errors import InputError
from datakit.eval.matching import (Match, assign_max_int, cooccurrence, load_match, match_by_cooccurrence,
                                   match_by_iou, save_match)


def _images_with_permuted_clusters(perm: np.ndarray, per_class: int = 3, seed: int = 0):
    """Per image: GT {class} (+ sometimes a second class) and the clusters a model would predict."""
    rng = np.random.default_rng(seed)
    n = len(perm)
    pairs = []
    for cls in range(1, n + 1):
        for _ in range(per_class):
            gt = {0, cls}
            pred = {0, int(perm[cls - 1])}
            if rng.random() < 0.3:  # a distractor class with its own cluster
                other = int(rng.integers(1, n + 1))
                gt.add(other)
                pred.add(int(perm[other - 1]))
            if rng.random() < 0.2:  # a stray cluster
                pred.add(int(rng.integers(1, n + 1)))
            pairs.append((sorted(gt), sorted(pred)))
    return pairs


def test_known_permutation_is_recovered_by_cooccurrence():
    n = 12
    perm = np.random.default_rng(1).permutation(n) + 1  # class c is predicted as cluster perm[c-1]
    count, images = cooccurrence(_images_with_permuted_clusters(perm), n, n)
    assert images == 3 * n
    match = match_by_cooccurrence(count)
    assert match.table[0] == 0
    for cls in range(1, n + 1):
        assert match.table[int(perm[cls - 1])] == cls


def test_cooccurrence_skips_background_and_ids_beyond_the_matrix():
    count, images = cooccurrence([([0, 1, 2, 1000], [0, 2, 7])], 3, 2)
    assert images == 1
    assert count.tolist() == [[0, 0], [1, 1], [0, 0]]


def test_ties_prefer_identity_then_are_deterministic():
    count = np.zeros((4, 4), dtype=np.int64)  # every assignment scores 0
    assert assign_max_int(count).tolist() == [0, 1, 2, 3]
    count[0, 1] = count[1, 0] = 5
    assert assign_max_int(count).tolist() == [1, 0, 2, 3]
    count = np.array([[2, 2], [2, 2]])
    assert assign_max_int(count).tolist() == [0, 1]
    assert assign_max_int(count).tolist() == assign_max_int(count.copy()).tolist()


def test_majority_vote_when_clusters_differ_from_classes():
    count = np.array([[5, 1, 0], [4, 4, 0], [0, 2, 7], [0, 0, 0], [1, 9, 0]])  # 5 clusters, 3 classes
    match = match_by_cooccurrence(count)
    assert match.table == {0: 0, 1: 1, 2: 1, 3: 3, 4: 0, 5: 2}  # 2: tie -> lowest class; 4: meets nothing -> 0
    with pytest.raises(InputError, match="one-to-one"):
        match_by_cooccurrence(count, "hungarian")


def test_pixel_iou_matching_recovers_a_permutation_and_votes():
    rng = np.random.default_rng(4)
    gt = rng.integers(0, 5, size=5000)
    perm = np.array([3, 0, 4, 1, 2])  # cluster perm[c] for class c
    clusters = perm[gt]
    noisy = np.where(rng.random(gt.size) < 0.1, rng.integers(0, 5, size=gt.size), clusters)
    conf = np.zeros((5, 5), dtype=np.int64)
    np.add.at(conf, (noisy, gt), 1)
    cls_of = match_by_iou(conf)
    assert [int(cls_of[perm[c]]) for c in range(5)] == [0, 1, 2, 3, 4]
    # 10 clusters (each class split in two) against 5 classes: majority vote
    split = np.where(rng.random(gt.size) < 0.5, perm[gt], perm[gt] + 5)
    conf = np.zeros((10, 5), dtype=np.int64)
    np.add.at(conf, (split, gt), 1)
    cls_of = match_by_iou(conf)
    assert all(cls_of[perm[c]] == c and cls_of[perm[c] + 5] == c for c in range(5))


def test_match_file_round_trip_and_errors(tmp_path):
    m = Match({0: 0, 1: 3, 2: 1, 3: 2})
    path = tmp_path / "match.json"
    save_match(m, path)
    assert json.loads(path.read_text()) == {"0": 0, "1": 3, "2": 1, "3": 2}
    assert load_match(path).table == m.table
    np.testing.assert_array_equal(m.apply(np.array([[1, 2], [3, 0]])), [[3, 1], [2, 0]])
    np.testing.assert_array_equal(m.apply_boundary(np.array([0, 2, 4, 1])), [0, 4, 3, 1])
    with pytest.raises(InputError, match=r"\[7\]"):
        m.apply(np.array([1, 7]))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a match file"):
        load_match(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        load_match(tmp_path / "none.json")
