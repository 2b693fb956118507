"""Confusion matrix, histc-style histograms and the boundary band, on small hand-computed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datakit.eval.boundary import band_width, boundary_map
from datakit.eval.confusion import Confusion, mean_iou, range_hist
from helpers_eval import get_boundary_mask


def test_range_hist_drops_out_of_range_ids_separately():
    gt = np.array([0, 0, 1, 1, 2, 7])
    pred = np.array([0, 1, 1, 9, 2, 2])
    inter, area_pred, area_gt = range_hist(pred, gt, 3)
    assert inter.tolist() == [1, 1, 1]
    assert area_pred.tolist() == [1, 2, 2]  # pred 9 dropped; pred 2 on gt 7 still counted
    assert area_gt.tolist() == [2, 2, 1]  # gt 7 dropped
    assert inter.dtype == np.int64


def test_confusion_hand_computed_iou_and_accuracy():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 2], [2, 0, 2, 0]])
    conf = Confusion.empty(3)
    conf.update(gt, pred, ignore_index=255)
    # class 0: tp 3, gt 4, pred 4 -> 3/5; class 1: tp 3, gt 4, pred 4 -> 3/5; class 2: tp 1, gt 2, pred 2 -> 1/3
    assert conf.intersection.tolist() == [3, 3, 1]
    np.testing.assert_allclose(conf.iou(), [3 / 5, 3 / 5, 1 / 3])
    assert conf.pixel_accuracy() == pytest.approx(7 / 10)
    np.testing.assert_allclose(conf.class_accuracy(), [3 / 4, 3 / 4, 1 / 2])
    assert mean_iou(conf.iou()) == pytest.approx((0.6 + 0.6 + 1 / 3) / 3)


def test_confusion_absent_class_and_out_of_range_prediction():
    conf = Confusion.empty(4)
    conf.update(np.array([0, 1, 1, 1]), np.array([0, 1, 1, 50]))
    iou = conf.iou()
    assert iou[1] == pytest.approx(2 / 3)  # the out-of-range pixel is a miss, nobody's false positive
    assert iou[0] == 1.0 and math.isnan(iou[2]) and math.isnan(iou[3])
    assert mean_iou(iou, "skip") == pytest.approx((1 + 2 / 3) / 2)
    assert mean_iou(iou, "zero") == pytest.approx((1 + 2 / 3) / 4)
    both = conf + conf
    assert both.matrix.sum() == 8 and both.intersection.tolist() == [2, 4, 0, 0]


def test_perfect_prediction_is_100_percent():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, size=(20, 30))
    conf = Confusion.empty(5)
    conf.update(gt, gt)
    assert mean_iou(conf.iou()) == 1.0 and conf.pixel_accuracy() == 1.0


def test_band_width_follows_the_diagonal():
    assert band_width(10, 10) == 1  # 0.42 rounds to 0, at least 1
    assert band_width(300, 400) == 15  # 0.03 * 500
    assert band_width(375, 500) == 19  # 0.03 * 625 = 18.75


def test_boundary_map_by_hand():
    labels = np.zeros((10, 10), dtype=np.int64)
    labels[:, 5:] = 1  # d = 1
    band = boundary_map(labels)
    expect = np.zeros((10, 10), dtype=np.int64)
    expect[:, :5] = 1  # class 0 -> value 1 ...
    expect[1:9, 1:4] = 0  # ... except its interior
    expect[:, 5:] = 2
    expect[1:9, 6:9] = 0
    np.testing.assert_array_equal(band, expect)


def test_boundary_map_matches_the_official_erosion():
    rng = np.random.default_rng(3)
    for h, w in [(37, 53), (64, 48), (9, 120)]:
        labels = np.zeros((h, w), dtype=np.int64)
        for cid in rng.integers(1, 6, size=5):
            y, x = rng.integers(0, h), rng.integers(0, w)
            labels[y : y + rng.integers(2, h), x : x + rng.integers(2, w)] = cid
        labels[rng.random((h, w)) < 0.01] = 1000  # speckle: thin regions are all band
        np.testing.assert_array_equal(boundary_map(labels), get_boundary_mask(labels + 1))
