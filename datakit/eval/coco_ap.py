"""COCO(-20K) instance mask AP through pycocotools' COCOeval (``iouType='segm'``), as ZUTIS reports it.

Results are the standard COCO results list (``image_id``, ``category_id``, ``segmentation`` as
compressed RLE, ``score``). ZUTIS predicts contiguous labels 1..80 and maps them back to COCO
category ids; ``contiguous_to_coco`` gives that map. pycocotools' console chatter is suppressed.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io import read_json_file

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _quiet():
    """pycocotools prints progress to stdout; keep it out of ``--json`` output."""
    return contextlib.redirect_stdout(io.StringIO())


def load_coco(gt: Any):
    """A pycocotools COCO from a path, a dataset dict or a COCO object."""
    from pycocotools.coco import COCO

    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, (str, Path)):
        gt = read_json_file(gt, "COCO annotation file")
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    with _quiet():
        coco.createIndex()
    return coco


def contiguous_to_coco(coco) -> dict[int, int]:
    """Labels 1..K in the order of increasing COCO category id (ZUTIS ``new_label_id_to_old_label_id``)."""
    return {i + 1: cid for i, cid in enumerate(sorted(coco.getCatIds()))}


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of one binary mask, with ``counts`` as str so it serialises to JSON."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_results(image_id: int, masks: Sequence[np.ndarray], category_ids: Sequence[int],
                 scores: Sequence[float]) -> list[dict[str, Any]]:
    """Results entries for one image's instance masks."""
    return [{"image_id": int(image_id), "category_id": int(c), "segmentation": encode_rle(m), "score": float(s)}
            for m, c, s in zip(masks, category_ids, scores)]


def annotations_as_results(coco, include_crowd: bool = False) -> list[dict[str, Any]]:
    """The GT instances written as score-1 results (a perfect prediction)."""
    out = []
    for ann in coco.dataset["annotations"]:
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        rle = coco.annToRLE(ann)
        counts = rle["counts"]
        rle = {"size": list(rle["size"]), "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle, "score": 1.0})
    return out


def _load_results(results: Any) -> list[dict[str, Any]]:
    """A results list from a path or a list (copied: ids may be remapped)."""
    if isinstance(results, (str, Path)):
        results = read_json_file(results, "results file")
    if not isinstance(results, list):
        raise InputError("COCO results must be a list of {image_id, category_id, segmentation, score}")
    return [dict(r) for r in results]


def coco_mask_ap(gt: Any, results: Any, label_map: Mapping[int, int] | None = None,
                 image_ids: Sequence[int] | None = None) -> dict[str, float]:
    """COCOeval segm summary (percent): AP, AP50, AP75, APs/m/l and the AR figures; NaN where undefined."""
    from pycocotools.cocoeval import COCOeval

    coco = load_coco(gt)
    dets = _load_results(results)
    if label_map is not None:
        for d in dets:
            d["category_id"] = label_map[int(d["category_id"])]
    known = set(coco.getImgIds())
    stray = sorted({d["image_id"] for d in dets} - known)
    if stray:
        raise InputError(f"results name images {stray[:5]} that are not in the ground truth")
    if not dets:
        return {k: 0.0 for k in COCO_STATS}
    for d in dets:
        if "segmentation" not in d:
            raise InputError("every result needs a 'segmentation' (compressed RLE)")
        d.pop("bbox", None)  # pycocotools would take the box branch and use the box area
    with _quiet():
        res = coco.loadRes(dets)
        ev = COCOeval(coco, res, iouType="segm")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # COCOeval reports -1 where a bucket has no GT (e.g. no small objects): NaN here
    return {k: float(v) * 100.0 if v >= 0 else float("nan") for k, v in zip(COCO_STATS, ev.stats)}
