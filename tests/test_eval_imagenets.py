"""The official ImageNet-S per-image evaluation: hand-computed cases and a cross-check with torch.histc."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datakit.errors import InputError
from datakit.eval.imagenets import ImageNetSCounts, fmeasure, image_counts, size_buckets, summarize
from datakit.eval.matching import Match
from helpers_eval import blob_gt, official_image


def _summary(pairs, n, match=None):
    total = ImageNetSCounts.empty(n + 1)
    for gt, pred in pairs:
        total += image_counts(gt, pred, n, match)
    return summarize(total, n, [str(i) for i in range(n + 1)])


def test_perfect_prediction_gives_100_everywhere():
    gts = [blob_gt(s, 48, 64, [1, 2, 3]) for s in range(4)]
    pairs = [(g, np.where(g == 1000, 7, g)) for g in gts]  # anything may be predicted on ignore pixels
    rep = _summary(pairs, 3)
    for key in ("Acc", "mIoU", "mBIoU", "FMeasure"):
        assert rep.metrics[key] == pytest.approx(100.0)
    present = [v for k, v in rep.metrics.items() if k in ("S", "MS", "ML", "L", "BS", "BMS", "BML", "BL") and not math.isnan(v)]
    assert present and all(v == pytest.approx(100.0) for v in present)


def test_hand_computed_iou_with_ignore_and_out_of_range_ids():
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 1000, 1000]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 5],  # 5 is outside 0..2: a miss for class 1, no false positive
                     [2, 0, 2, 2]])  # predictions on ignore pixels do not count
    c = image_counts(gt, pred, 2)
    assert c.tp.tolist() == [3, 3, 1]
    assert c.area_pred.tolist() == [4, 4, 1]
    assert c.area_gt.tolist() == [4, 4, 2]
    rep = summarize(c, 2, ["bg", "a", "b"])
    expect = [3 / 5, 3 / 5, 1 / 2]
    np.testing.assert_allclose(rep.iou, [100 * e for e in expect], rtol=1e-9)
    assert rep.metrics["mIoU"] == pytest.approx(100 * sum(expect) / 3)


def test_absent_classes_count_as_zero_in_miou():
    gt = np.zeros((8, 8), dtype=np.int64)
    gt[2:6, 2:6] = 1
    rep = _summary([(gt, gt)], 4)  # ids 2..4 never occur: IoU 0, still averaged
    assert rep.metrics["mIoU"] == pytest.approx(100 * 2 / 5)


def test_size_buckets_by_share_of_valid_pixels():
    gt = np.zeros(100, dtype=np.int64)
    gt[:5] = 1  # 5 %  -> S
    gt[5:25] = 2  # 20 % -> MS
    gt[25:55] = 3  # 30 % -> ML
    assert size_buckets(gt) == {1: 0, 2: 1, 3: 2}
    gt = np.zeros(100, dtype=np.int64)
    gt[:6] = 1  # 6 % -> MS
    gt[6:57] = 2  # 51 % -> L
    gt[57:58] = 1500  # a stray GT id still gets a bucket, as officially
    assert size_buckets(gt) == {1: 1, 2: 3, 1500: 0}
    assert size_buckets(np.zeros(10, dtype=np.int64)) == {}


def test_size_bucket_iou_by_hand():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[0, :4] = 1  # 4 % -> S
    gt[5:, :] = 2  # 50 % -> ML
    pred = gt.copy()
    pred[0, 0] = 0  # one pixel of the small object missed
    c = image_counts(gt, pred, 2)
    # S bucket: background (46 px) + class 1 (4 px); ML bucket: background + class 2
    assert c.size_gt[0].tolist() == [46, 4, 0] and c.size_tp[0].tolist() == [46, 3, 0]
    assert c.size_pred[0].tolist() == [47, 3, 0]
    assert c.size_gt[2].tolist() == [46, 0, 50] and c.size_tp[2].tolist() == [46, 0, 50]
    assert c.size_gt[1].sum() == 0 and c.size_gt[3].sum() == 0
    rep = summarize(c, 2, ["bg", "a", "b"])
    assert rep.metrics["S"] == pytest.approx(100 * (46 / 47 + 3 / 4) / 2, rel=1e-9)
    assert rep.metrics["ML"] == pytest.approx(100.0)
    assert math.isnan(rep.metrics["MS"]) and math.isnan(rep.metrics["L"])


def test_fmeasure_and_image_accuracy_by_hand():
    gt = np.array([0, 1, 1, 1, 1, 0])
    pred = np.array([0, 2, 2, 0, 0, 0])
    assert fmeasure(pred, gt) == pytest.approx(1.3 * 1.0 * 0.5 / (0.3 * 1.0 + 0.5))
    assert fmeasure(np.zeros(4), np.zeros(4)) == 0.0
    g2, p2 = gt.reshape(2, 3), pred.reshape(2, 3)
    assert image_counts(g2, p2, 2).correct == 0  # most-predicted class 2 is not in the GT
    p3 = np.array([[0, 2, 1], [0, 0, 0]])
    assert image_counts(g2, p3, 2).correct == 1  # ties go to the lowest id (1), which is in the GT


def test_match_maps_values_and_boundaries():
    gt = blob_gt(5, 40, 40, [1, 2])
    perm = {0: 0, 1: 2, 2: 1, 1000: 1000}
    pred = np.vectorize(lambda v: {0: 0, 1: 2, 2: 1}.get(v, 0))(gt)
    matched = image_counts(gt, pred, 2, Match({0: 0, 1: 2, 2: 1}))
    perfect = image_counts(gt, np.where(gt == 1000, 0, gt), 2)
    for name in ("tp", "area_pred", "area_gt", "btp", "barea_pred", "barea_gt"):
        np.testing.assert_array_equal(getattr(matched, name), getattr(perfect, name))
    with pytest.raises(InputError, match="not in the match"):
        image_counts(gt, pred + 3, 2, Match(perm))


def test_same_counts_as_the_official_torch_histc_code():
    rng = np.random.default_rng(11)
    for seed in range(6):
        h, w = rng.integers(20, 70, size=2)
        gt = blob_gt(seed, int(h), int(w), list(rng.integers(1, 6, size=3)))
        pred = blob_gt(seed + 100, int(h), int(w), list(rng.integers(0, 8, size=4)), ignore=False)
        pred[rng.random(pred.shape) < 0.02] = 300  # out-of-range ids
        match = {v: (v * 3) % 9 for v in range(301)} if seed % 2 else None
        mine = image_counts(gt, pred, 5, Match(match) if match else None)
        ref = official_image(gt, pred, 5, match)
        np.testing.assert_array_equal(np.stack([mine.tp, mine.area_pred, mine.area_gt]), ref["main"].numpy())
        np.testing.assert_array_equal(np.stack([mine.btp, mine.barea_pred, mine.barea_gt]), ref["boundary"].numpy())
        for b in range(4):
            np.testing.assert_array_equal(np.stack([mine.size_tp[b], mine.size_pred[b], mine.size_gt[b]]), ref["size"][b].numpy())
            np.testing.assert_array_equal(np.stack([mine.size_btp[b], mine.size_bpred[b], mine.size_bgt[b]]),
                                          ref["bsize"][b].numpy())
        assert mine.fmeasure_sum == pytest.approx(ref["f"], rel=1e-6)
        assert mine.correct == ref["correct"]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2x3"):
        image_counts(np.zeros((4, 4), dtype=np.int64), np.zeros((3, 2), dtype=np.int64), 2)
