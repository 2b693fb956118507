"""Evaluation protocols on CPU with exact integer counts: ImageNet-S (official), semseg, matching, probes.

Modules: ``confusion`` (mIoU), ``boundary`` (mBIoU band), ``imagenets`` (official per-image
counts and summary), ``runner`` (eval/match over shards or folders in worker processes),
``semseg`` (any split's shards), ``matching`` (Hungarian / majority vote, match.json),
``kmeans`` (MaskContrast protocol), ``probe`` (linear probe), ``distance`` (PASS distance
matching), ``coco_ap`` (COCOeval mask AP), ``gt`` (GT and prediction files). ``probe`` and
``distance`` need torch and are imported on their own.
"""

from __future__ import annotations

from .boundary import band_width, boundary_map
from .confusion import Confusion, mean_iou, range_hist
from .coco_ap import coco_mask_ap
from .imagenets import ImageNetSCounts, ImageNetSReport, image_counts, summarize
from .kmeans import KMeansProtocol, KMeansReport, kmeans_protocol, salient_prototypes
from .matching import Match, cooccurrence, load_match, match_by_cooccurrence, match_by_iou, save_match
from .runner import MatchReport, EvalOptions, evaluate_imagenets, match_imagenets
from .semseg import SemsegReport, evaluate_semseg

__all__ = [
    "Confusion", "ImageNetSCounts", "ImageNetSReport", "KMeansProtocol", "KMeansReport", "Match", "MatchReport",
    "EvalOptions", "SemsegReport", "band_width", "boundary_map", "coco_mask_ap", "cooccurrence", "evaluate_imagenets",
    "evaluate_semseg", "image_counts", "kmeans_protocol", "load_match", "match_by_cooccurrence", "match_by_iou",
    "match_imagenets", "mean_iou", "range_hist", "salient_prototypes", "save_match", "summarize",
]
