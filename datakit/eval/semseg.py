"""``datakit eval semseg``: confusion-matrix mIoU of ``<key>.png`` predictions against any split's shards.

Class count and ignore id come from the split's class table; predictions are single-channel
PNGs of class ids at GT size. mIoU follows mmseg (classes absent from both GT and prediction
are skipped); ``mIoU_all`` counts them as 0 (MaskContrast, ImageNetSegModel).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .confusion import Confusion, finite_or_none, mean_iou
from .gt import ShardChunk, read_label_png, shard_gt
from .runner import EvalOptions, run_tasks


@dataclass(frozen=True)
class SemsegTask:
    """One shard of GT and the folder of ``<key>.png`` predictions."""

    chunk: ShardChunk
    pred_dir: str
    num_classes: int
    ignore_index: int | None


def semseg_task(task: SemsegTask, progress: Callable[[int], None]) -> Confusion:
    """The confusion matrix of one shard (runs in a worker)."""
    conf = Confusion.empty(task.num_classes)
    for item in task.chunk.items():
        path = os.path.join(task.pred_dir, item.rel)
        pred = read_label_png(path)
        if pred.shape != item.ids.shape:
            raise InputError(f"prediction {path} is {pred.shape[1]}x{pred.shape[0]}, "
                             f"ground truth is {item.ids.shape[1]}x{item.ids.shape[0]}")
        conf.update(item.ids, pred, task.ignore_index)
        progress(1)
    return conf


@dataclass
class SemsegReport:
    """Scores in percent, per-class IoU/accuracy (None where a class is absent), the raw matrix."""

    metrics: dict[str, float]
    iou: list[float]
    accuracy: list[float]
    class_names: list[str]
    images: int
    confusion: Confusion | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: NaN scores become null."""
        return {
            "images": self.images,
            "metrics": {k: finite_or_none(v) for k, v in self.metrics.items()},
            "classes": [{"id": i, "name": n, "IoU": finite_or_none(a), "Acc": finite_or_none(b)}
                        for i, (n, a, b) in enumerate(zip(self.class_names, self.iou, self.accuracy))],
        }


def report(conf: Confusion, names: list[str], images: int) -> SemsegReport:
    """Scores of an accumulated confusion matrix."""
    iou, acc = conf.iou(), conf.class_accuracy()
    metrics = {
        "mIoU": 100.0 * mean_iou(iou, "skip"),
        "mIoU_all": 100.0 * mean_iou(iou, "zero"),
        "aAcc": 100.0 * conf.pixel_accuracy(),
        "mAcc": 100.0 * mean_iou(acc, "skip"),
    }
    return SemsegReport(metrics, (100.0 * iou).tolist(), (100.0 * acc).tolist(), names, images, conf)


def evaluate_semseg(pred_dir: str, gt: str, member: str | None = None, opts: EvalOptions = EvalOptions()) -> SemsegReport:
    """Evaluate ``pred_dir/<key>.png`` against the mask member of one split's shards."""
    if not Path(pred_dir).is_dir():
        raise InputError(f"prediction folder not found: {pred_dir}")
    gts = shard_gt(gt, "key", member)
    tasks = [SemsegTask(c, pred_dir, gts.num_classes, gts.ignore_index) for c in gts.chunks]  # type: ignore[arg-type]
    total = Confusion.empty(gts.num_classes)
    for part in run_tasks(semseg_task, tasks, gts.total, opts, "evaluating"):
        total = total + part
    return report(total, list(gts.class_names), gts.total)
