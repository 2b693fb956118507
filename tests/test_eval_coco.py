"""COCO mask AP through COCOeval on the real COCO fixture (val2017 image 448263)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datakit.errors import InputError
from datakit.eval.coco_ap import (annotations_as_results, coco_mask_ap, contiguous_to_coco, encode_rle, load_coco,
                                  mask_results)

FIXTURE = Path(__file__).parent / "fixtures" / "coco" / "instances_val2017_448263.json"


def test_ground_truth_as_predictions_gives_ap_100():
    coco = load_coco(FIXTURE)
    results = annotations_as_results(coco)
    assert len(results) == 15  # the crowd region is not a detection
    stats = coco_mask_ap(coco, results)
    assert stats["AP"] == pytest.approx(100.0)
    assert stats["AP50"] == pytest.approx(100.0) and stats["AP75"] == pytest.approx(100.0)
    with_crowd = coco_mask_ap(FIXTURE, annotations_as_results(coco, include_crowd=True))
    assert with_crowd["AP"] == pytest.approx(100.0)  # a detection on a crowd region is ignored


def test_missing_and_shifted_instances_lower_ap(tmp_path):
    coco = load_coco(FIXTURE)
    results = annotations_as_results(coco)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results[1:]))  # one person missed
    assert coco_mask_ap(FIXTURE, path)["AP"] < 100.0
    shifted = []
    for ann_id in coco.getAnnIds(iscrowd=False):
        mask = np.roll(coco.annToMask(coco.anns[ann_id]), 40, axis=1)
        shifted += mask_results(448263, [mask], [coco.anns[ann_id]["category_id"]], [0.9])
    assert coco_mask_ap(coco, shifted)["AP"] < 50.0


def test_contiguous_labels_map_back_to_coco_ids():
    coco = load_coco(FIXTURE)
    mapping = contiguous_to_coco(coco)
    assert mapping[1] == 1 and len(mapping) == 80 and mapping[80] == 90
    inverse = {v: k for k, v in mapping.items()}
    results = [{**r, "category_id": inverse[r["category_id"]]} for r in annotations_as_results(coco)]
    assert coco_mask_ap(coco, results, label_map=mapping)["AP"] == pytest.approx(100.0)


def test_bad_results_are_clear_errors():
    rle = encode_rle(np.ones((240, 320), dtype=bool))
    with pytest.raises(InputError, match="not in the ground truth"):
        coco_mask_ap(FIXTURE, [{"image_id": 1, "category_id": 1, "segmentation": rle, "score": 1.0}])
    with pytest.raises(InputError, match="segmentation"):
        coco_mask_ap(FIXTURE, [{"image_id": 448263, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    assert all(v == 0.0 for v in coco_mask_ap(FIXTURE, []).values())


def test_recall_at_one_detection_by_hand():
    # 13 people, one sports ball, one baseball glove: AR1 finds one person of 13, AR10 ten
    coco = load_coco(FIXTURE)
    cats = [coco.anns[a]["category_id"] for a in coco.getAnnIds(iscrowd=False)]
    per_cat = {c: cats.count(c) for c in set(cats)}
    stats = coco_mask_ap(coco, annotations_as_results(coco))
    assert stats["AR1"] == pytest.approx(100 * sum(min(1, n) / n for n in per_cat.values()) / len(per_cat))
    assert stats["AR10"] == pytest.approx(100 * sum(min(10, n) / n for n in per_cat.values()) / len(per_cat))
