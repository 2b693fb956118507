"""PASS's pseudo-label step end to end: predict a split with a checkpoint, then write the split again as
shards with the predictions as a new mask member, through the normal build pipeline (so the new
shards have an index, hashes and done markers, and ``train`` can fine-tune on them).

Predictions are mapped from the model's classes to the split's class table by name (unknown ->
the ignore id), saved as ``<out>/predictions/<split>/<key>.png``, and read by
``datakit.sources.pseudolabel.PseudoLabelSource``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_write_bytes
from ..progress import ProgressBar
from ..shards.index import load_index
from ..shards.reader import iter_split
from .checkpoint import load_checkpoint
from .distributed import pick_device
from .evaluation import to_table
from .infer import InferOptions, predict_image
from .predict import _png, model_from_state, prediction_path


@dataclass(frozen=True)
class PseudoOptions:
    member: str = "pseudo.png"
    device: str = "auto"
    workers: int = 1
    resume: bool = False
    progress: bool = False


@dataclass
class PseudoReport:
    samples: int
    index: str
    predictions: str


def write_predictions(checkpoint: str, data: str, folder: Path, opts: PseudoOptions) -> int:
    """``<folder>/<key>.png`` in the split's class ids for every sample (kept ones skipped on resume)."""
    index = load_index(data)
    table = index.spec.classes
    if table is None:
        raise InputError(f"{data}: the split has no class table; pseudo-labels are ids in it")
    device = pick_device(opts.device)
    model, vocab, cfg = model_from_state(load_checkpoint(checkpoint), device)
    lut = to_table(index, tuple(vocab))
    lut = np.where(lut < 0, index.spec.ignore_id, lut)
    infer = InferOptions.of(cfg.test, cfg.train.crop)
    bits16 = max(table.max_id, index.spec.ignore_id) > 255
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    with ProgressBar(index.total, "pseudo-labelling", opts.progress, unit="images") as bar:
        for sample in iter_split(index):
            target = prediction_path(folder, "png", str(sample["__key__"]), {})
            if not (opts.resume and target.is_file()):
                label, _ = predict_image(model, sample["jpg"], device, infer)
                ids = lut[np.clip(label, 0, len(lut) - 1)]
                png = _png(ids.astype(np.uint16), "I;16") if bits16 else _png(ids.astype(np.uint8), "L")
                atomic_write_bytes(target, png)
            count += 1
            bar.advance(1)
    return count


def pseudolabel(checkpoint: str, data: str, out: str, opts: PseudoOptions = PseudoOptions()) -> PseudoReport:
    """Predict ``data`` and build ``<out>/<split>/`` = the split + ``opts.member``."""
    from ..pipeline import BuildOptions, build
    from ..sources.pseudolabel import PseudoLabelSource

    split = load_index(data).spec.split
    existing = Path(out) / split
    if existing.is_dir() and any(existing.iterdir()) and not opts.resume:
        raise InputError(f"{existing} already exists; pass --resume to continue it, or choose another --out")
    folder = Path(out) / "predictions" / split
    write_predictions(checkpoint, data, folder, opts)
    source = PseudoLabelSource(data, str(folder), opts.member)
    report = build(source, out, [split], BuildOptions(workers=opts.workers, resume=opts.resume, progress=opts.progress))
    return PseudoReport(report.splits[0].samples, str(Path(out) / split / "index.json"), str(folder))
