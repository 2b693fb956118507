"""Predictions in each benchmark's submission format, from a trainer checkpoint and a split of shards.

``imagenets``: RGB PNG per image at its size, id = R + 256·G, as ``<wnid>/<name>.png``.
``png``: a single-channel PNG per sample key (what ``datakit eval semseg`` reads).
``coco-rle``: a COCO results JSON (one RLE per predicted class and image, for COCO-20K AP).

Output names come from shard keys and json members, i.e. from data: a name that is a path
(``../x``, ``/abs/x``, ``a/b``) is refused, and every target must resolve inside ``out``.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..io import atomic_write_bytes
from ..progress import ProgressBar
from ..shards.index import load_index
from ..shards.reader import iter_split
from .checkpoint import load_checkpoint
from .config import TestConfig, from_dict
from .distributed import pick_device
from .infer import InferOptions, predict_image
from .model import SegModel, build_model

FORMATS = ("imagenets", "png", "coco-rle")
_PATHLIKE = re.compile(r"[/\\\x00]|^\.\.?$|^\.\.|^[A-Za-z]:")


@dataclass(frozen=True)
class PredictOptions:
    """Output format and device; test-time settings left ``None`` keep the checkpoint's ``[test]``."""

    fmt: str = "png"
    device: str = "auto"
    resize_short: int | None = None
    max_res: int | None = None
    mode: str | None = None
    crop: int | None = None
    stride: int | None = None
    flip: bool | None = None
    progress: bool = False

    def test_config(self, base: TestConfig) -> TestConfig:
        given = {k: getattr(self, k) for k in ("resize_short", "max_res", "mode", "crop", "stride", "flip")
                 if getattr(self, k) is not None}
        if given.get("mode", "whole") not in ("whole", "slide"):
            raise InputError(f"--mode must be whole or slide, not {given['mode']!r}")
        if any(isinstance(v, int) and not isinstance(v, bool) and v < 0 for v in given.values()):
            raise InputError("--resize-short, --max-res, --crop and --stride must be >= 0")
        return replace(base, **given)


@dataclass
class PredictReport:
    images: int
    out: str
    format: str


def model_from_state(state: dict[str, Any], device: torch.device) -> tuple[SegModel, list[str], Any]:
    """The model of a loaded checkpoint (EMA weights when it has them), its vocabulary and config."""
    cfg = from_dict(state["config"])
    vocab = list(state["vocab"])
    model = build_model(cfg.model, cfg.model.num_classes or len(vocab), load_pretrained=False)
    try:
        model.load_state_dict(state.get("ema") or state["model"])
    except RuntimeError as err:
        raise InputError(f"checkpoint weights do not fit its own model config: {str(err).splitlines()[0]}") from None
    return model.to(device).eval(), vocab, cfg


def load_trained(checkpoint: str | Path, device: torch.device) -> tuple[SegModel, list[str]]:
    """A trainer checkpoint as a ready (eval-mode) model and its class names; never runs pickled code."""
    model, vocab, _ = model_from_state(load_checkpoint(checkpoint), device)
    return model, vocab


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG")
    return buf.getvalue()


def encode_imagenets(label: np.ndarray) -> bytes:
    """The official ImageNet-S prediction encoding: R = id mod 256, G = id div 256, B = 0."""
    rgb = np.zeros((*label.shape, 3), np.uint8)
    rgb[..., 0] = label % 256
    rgb[..., 1] = label // 256
    return _png(rgb, "RGB")


def plain_name(value: Any, what: str, key: str) -> str:
    """``value`` if it is a plain file name (no separators, no ``..``, not absolute), else one-line error."""
    text = str(value)
    if not text or _PATHLIKE.search(text):
        raise InputError(f"sample {key!r}: {what} {text!r} is not a plain name; refusing to build an output path from it")
    return text


def inside(out_dir: Path, *parts: str) -> Path:
    """``out_dir/parts`` after checking it resolves inside ``out_dir`` (symlinks included)."""
    target = out_dir.joinpath(*parts)
    root = out_dir.resolve()
    if not target.resolve().is_relative_to(root):
        raise InputError(f"{target} resolves outside {root}; refusing to write there")
    return target


def prediction_path(out_dir: Path, fmt: str, key: str, meta: dict[str, Any]) -> Path:
    """Where one sample's prediction goes (imagenets: ``<wnid>/<name>.png``; png: ``<key>.png``)."""
    if fmt == "png":
        return inside(out_dir, plain_name(key, "key", key) + ".png")
    wnid, rel = meta.get("wnid"), meta.get("path")
    if not wnid or not rel:
        raise InputError(f"{key}: no 'wnid'/'path' in its json member; not an ImageNet-S split?")
    stem = str(rel).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return inside(out_dir, plain_name(wnid, "wnid", key), plain_name(stem, "file name", key) + ".png")


def predict(checkpoint: str, data: str, out: str, opts: PredictOptions = PredictOptions()) -> PredictReport:
    """Predict every sample of a split and write it in ``opts.fmt`` under ``out``."""
    if opts.fmt not in FORMATS:
        raise InputError(f"unknown prediction format {opts.fmt!r}; choose from {', '.join(FORMATS)}")
    dev = pick_device(opts.device)
    model, vocab, cfg = model_from_state(load_checkpoint(checkpoint), dev)
    infer = InferOptions.of(opts.test_config(cfg.test), cfg.train.crop)
    index = load_index(data)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    coco_ids = category_ids(vocab, index.spec.classes) if opts.fmt == "coco-rle" else {}
    count = 0
    with ProgressBar(index.total, "predicting", opts.progress, unit="images") as bar:
        for sample in iter_split(index):
            meta = sample.get("json", {}) if isinstance(sample.get("json"), dict) else {}
            target = prediction_path(out_dir, opts.fmt, str(sample["__key__"]), meta) if opts.fmt != "coco-rle" else None
            label, score = predict_image(model, sample["jpg"], dev, infer)
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, _encode(opts.fmt, label))
            else:
                results.extend(_coco_results(label, score, meta, coco_ids))
            count += 1
            bar.advance(1)
    if opts.fmt == "coco-rle":
        atomic_write_bytes(out_dir / "results.json", json.dumps(results).encode())
    return PredictReport(count, str(out_dir), opts.fmt)


def _encode(fmt: str, label: np.ndarray) -> bytes:
    if fmt == "imagenets":
        return encode_imagenets(label.astype(np.int64))
    if label.max(initial=0) > 255:
        return _png(label.astype(np.uint16), "I;16")
    return _png(label.astype(np.uint8), "L")


def category_ids(vocab: list[str], table: Any) -> dict[int, int]:
    """Model class id → COCO category id, matched by class name through the data's class table
    (COCO-20K tables are keyed by the original COCO id; others may carry ``coco_id``)."""
    if table is None:
        raise InputError("coco-rle predictions need a class table in the data index")
    by_name = {e.name.strip().lower(): int(e.extra.get("coco_id", e.id)) for e in table.entries}
    return {i: by_name[n.strip().lower()] for i, n in enumerate(vocab) if n.strip().lower() in by_name}


def _coco_results(label: np.ndarray, score: np.ndarray, meta: dict[str, Any], coco_ids: dict[int, int]) -> list[dict[str, Any]]:
    """One result per predicted class that has a COCO category: its RLE, category id and mean score."""
    from ..eval.coco_ap import encode_rle

    image_id = meta.get("image_id")
    if image_id is None:
        raise InputError("coco-rle predictions need samples with an 'image_id' in their json member (COCO-20K shards)")
    out = []
    for cid in np.unique(label):
        if int(cid) not in coco_ids:  # background / classes with no COCO category
            continue
        m = label == cid
        out.append({"image_id": int(image_id), "category_id": coco_ids[int(cid)],
                    "segmentation": encode_rle(m), "score": float(score[m].mean())})
    return out
