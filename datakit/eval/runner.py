"""``datakit eval imagenets`` and ``datakit match imagenets``: GT chunks evaluated in worker processes.

Each task is one GT chunk (a shard, or a slice of an official folder) plus the prediction
folder; workers read both, and return summed counts (eval) or per-image id sets (match).
Nothing lives in the workers between tasks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from ..imagenets.lists import IGNORE_ID, SUBSETS, load_lists
from ..jobs import run_local, values
from ..progress import ProgressBar
from .gt import GTChunk, GTSet, FolderChunk, chunked, decode_id_png, is_shards, scan_id_folder, shard_gt
from .imagenets import ImageNetSCounts, ImageNetSReport, image_counts, summarize
from .matching import TIES, Match, cooccurrence, match_by_cooccurrence

FOLDER_CHUNK = 64


@dataclass(frozen=True)
class EvalOptions:
    """How to run: worker processes, GT images per folder task, progress bar."""

    workers: int = 1
    chunk: int = FOLDER_CHUNK
    progress: bool = False


def check_subset(subset: int) -> None:
    """Only 50, 300 and 919 exist."""
    if subset not in SUBSETS:
        raise InputError(f"ImageNet-S subset must be one of {SUBSETS}, not {subset}")


def subset_class_names(subset: int) -> list[str]:
    """Names of ids 0..N (row 0 = background), from the ImageNet-S lists."""
    return ["background", *load_lists(subset).names]


def official_validation(subset: int) -> set[str]:
    """``<wnid>/<name>.png`` of every image of the official validation list."""
    return {f"{e.wnid}/{e.mask_name}" for e in load_lists(subset).validation}


def folder_gt(path: Path, subset: int, chunk: int) -> GTSet:
    """An official ``validation-segmentation`` folder (or its ``ImageNetS{N}`` parent)."""
    root = path / "validation-segmentation" if (path / "validation-segmentation").is_dir() else path
    rels = scan_id_folder(root)
    known = set(load_lists(subset).wnids)
    stray = sorted({r.split("/")[0] for r in rels} - known)
    if stray:
        raise InputError(f"{root}: class folders {stray[:5]} are not ImageNet-S{subset} classes (wrong --subset?)")
    chunks = tuple(FolderChunk(str(root), c) for c in chunked(rels, chunk))
    return GTSet(str(root), chunks, len(rels), subset + 1, IGNORE_ID, tuple(subset_class_names(subset)))


def imagenets_gt(gt: str, subset: int, chunk: int = FOLDER_CHUNK) -> GTSet:
    """GT from shards (class table must be ids 0..N, ignore 1000) or from an official folder."""
    check_subset(subset)
    if Path(gt, "validation", "index.json").is_file():  # a built dataset root: its validation split
        gt = str(Path(gt, "validation"))
    if is_shards(gt):
        found = shard_gt(gt, "imagenets")
        if found.num_classes != subset + 1 or found.ignore_index != IGNORE_ID:
            raise InputError(f"{gt}: class table has ids 0..{found.num_classes - 1} and ignore {found.ignore_index}; "
                             f"ImageNet-S{subset} needs 0..{subset} and ignore {IGNORE_ID}")
        return found
    path = Path(gt)
    if not path.is_dir():
        raise InputError(f"ground truth not found: {gt} (expected shards or a validation-segmentation folder)")
    return folder_gt(path, subset, chunk)


def coverage_notes(gt: GTSet, rels: list[str] | None, subset: int) -> list[str]:
    """Say when the evaluated images are not exactly the official validation list."""
    official = official_validation(subset)
    if rels is not None and set(rels) == official:
        return []
    if rels is None and gt.split == "validation" and gt.total == len(official):
        return []
    return [f"evaluated {gt.total} images; the official ImageNet-S{subset} validation set has {len(official)}: "
            "numbers are not comparable with published ones"]


@dataclass(frozen=True)
class PredTask:
    """One GT chunk and where its predictions are; ``match`` items are (cluster, class) pairs."""

    chunk: GTChunk
    pred_dir: str
    num_classes: int
    match: tuple[tuple[int, int], ...] | None = None


def _load_pred(task: PredTask, rel: str, shape: tuple[int, ...]) -> np.ndarray:
    """The prediction for one GT map; missing, non-RGB or wrongly sized is an error naming it."""
    path = os.path.join(task.pred_dir, rel)
    pred = decode_id_png(path, "prediction")
    if pred.shape != shape:
        raise InputError(f"prediction {path} is {pred.shape[1]}x{pred.shape[0]}, ground truth is {shape[1]}x{shape[0]}")
    return pred


def eval_task(task: PredTask, progress: Callable[[int], None]) -> ImageNetSCounts:
    """Summed official counts of one chunk."""
    total = ImageNetSCounts.empty(task.num_classes + 1)
    match = Match(dict(task.match)) if task.match is not None else None
    for item in task.chunk.items():
        pred = _load_pred(task, item.rel, item.ids.shape)
        total += image_counts(item.ids, pred, task.num_classes, match, IGNORE_ID, os.path.join(task.pred_dir, item.rel))
        progress(1)
    return total


def match_task(task: PredTask, progress: Callable[[int], None]) -> list[tuple[list[int], list[int]]]:
    """Per image: (GT ids, predicted ids) present after dropping ignored pixels."""
    out = []
    for item in task.chunk.items():
        pred = _load_pred(task, item.rel, item.ids.shape)
        valid = item.ids != IGNORE_ID
        out.append((np.unique(item.ids[valid]).tolist(), np.unique(pred[valid]).tolist()))
        progress(1)
    return out


def run_tasks(fn: Callable, tasks: list[PredTask], total: int, opts: EvalOptions, label: str) -> list:
    """Run on the local executor; the first failed task becomes one InputError."""
    with ProgressBar(total, label, opts.progress) as bar:
        return values(run_local(fn, tasks, opts.workers, bar.advance))


def _tasks(gt: GTSet, pred_dir: str, subset: int, match: Match | None) -> list[PredTask]:
    """One task per GT chunk; the match travels as (cluster, class) pairs."""
    if not Path(pred_dir).is_dir():
        raise InputError(f"prediction folder not found: {pred_dir}")
    items = tuple(sorted(match.table.items())) if match is not None else None
    return [PredTask(c, pred_dir, subset, items) for c in gt.chunks]


def _folder_rels(gt: GTSet) -> list[str] | None:
    """Every GT path of a folder GT (None for shards, whose names are known only when read)."""
    if gt.chunks and isinstance(gt.chunks[0], FolderChunk):
        return [r for c in gt.chunks for r in c.rels]  # type: ignore[union-attr]
    return None


def check_folder_predictions(gt: GTSet, pred_dir: str) -> None:
    """For folder GT, list missing predictions up front (shards are checked as they are read)."""
    rels = _folder_rels(gt)
    if rels is None:
        return
    missing = [r for r in rels if not os.path.isfile(os.path.join(pred_dir, r))]
    if missing:
        raise InputError(f"{len(missing)} of {len(rels)} predictions missing under {pred_dir}, "
                         f"first: {', '.join(missing[:3])}")


def evaluate_imagenets(pred_dir: str, gt: str, subset: int, match: Match | None = None,
                       opts: EvalOptions = EvalOptions()) -> ImageNetSReport:
    """The official ImageNet-S evaluation of a prediction folder against shards or a GT folder."""
    gts = imagenets_gt(gt, subset, opts.chunk)
    check_folder_predictions(gts, pred_dir)
    parts = run_tasks(eval_task, _tasks(gts, pred_dir, subset, match), gts.total, opts, "evaluating")
    total = ImageNetSCounts.empty(subset + 1)
    for part in parts:
        total += part
    names = list(gts.class_names) if len(gts.class_names) == subset + 1 else subset_class_names(subset)
    return summarize(total, subset, names, coverage_notes(gts, _folder_rels(gts), subset))


@dataclass(frozen=True)
class MatchReport:
    """The match, how many images it was computed on, its summed co-occurrence and the method."""

    match: Match
    images: int
    cooccurrence: int  # summed co-occurrence count of the chosen pairs
    method: str


def match_imagenets(pred_dir: str, gt: str, subset: int, clusters: int | None = None, method: str = "auto",
                    opts: EvalOptions = EvalOptions(), ties: str = "official") -> MatchReport:
    """Official fully-unsupervised matching: clusters 1..C to classes 1..N by image co-occurrence;
    ``ties="official"`` picks among equal optima exactly as ``match.py`` (munkres) does."""
    if ties not in TIES:
        raise InputError(f"unknown tie rule {ties!r}; choose {' or '.join(TIES)}")
    gts = imagenets_gt(gt, subset, opts.chunk)
    check_folder_predictions(gts, pred_dir)
    n_clusters = subset if clusters is None else clusters
    if n_clusters < 1:
        raise InputError(f"number of clusters must be positive, not {n_clusters}")
    parts = run_tasks(match_task, _tasks(gts, pred_dir, subset, None), gts.total, opts, "matching")
    count, images = cooccurrence((pair for part in parts for pair in part), n_clusters, subset)
    chosen = method if method != "auto" else ("hungarian" if n_clusters == subset else "majority")
    match = match_by_cooccurrence(count, chosen, ties, images)
    score = sum(int(count[i - 1, j - 1]) for i, j in match.table.items() if i > 0 and j > 0)
    return MatchReport(match, images, score, chosen)
