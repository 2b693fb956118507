"""Predictions in each benchmark's submission format, from a trainer checkpoint and a split of shards.

``imagenets``: RGB PNG per image at its size, id = R + 256·G, as ``<wnid>/<name>.png``.
``png``: a single-channel PNG per sample key (what ``datakit eval semseg`` reads).
``coco-rle``: a COCO results JSON (one RLE per predicted class and image, for COCO-20K AP).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..shards.index import load_index
from ..shards.reader import iter_split
from ..io import atomic_write_bytes
from .config import ModelConfig
from .model import SegModel, build_model

FORMATS = ("imagenets", "png", "coco-rle")


@dataclass
class PredictReport:
    images: int
    out: str
    format: str


def load_model(checkpoint: str | Path, device: torch.device) -> tuple[SegModel, list[str]]:
    path = Path(checkpoint)
    if not path.exists():
        raise InputError(f"checkpoint not found: {checkpoint}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    # the checkpoint holds every weight: never fetch or re-read the original pretrained backbone
    mcfg = ModelConfig(**{**state["config"]["model"], "pretrained": ""})
    model = build_model(mcfg, mcfg.num_classes or len(state["vocab"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), list(state["vocab"])


@torch.no_grad()
def predict_image(model: SegModel, image: np.ndarray, device: torch.device, multiple: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and their softmax scores at the image's size (padded to a multiple, cropped back)."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].to(device)
    ph, pw = -h % multiple, -w % multiple
    x = F.pad(x.float(), (0, pw, 0, ph), mode="replicate")
    probs = model(x)[0, :, :h, :w].softmax(0)
    score, label = probs.max(0)
    return label.cpu().numpy(), score.cpu().numpy()


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


def predict(checkpoint: str, data: str, out: str, fmt: str = "png", device: str = "auto",
            progress: Callable[[int], None] | None = None) -> PredictReport:
    if fmt not in FORMATS:
        raise InputError(f"unknown prediction format {fmt!r}; choose from {', '.join(FORMATS)}")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    model, vocab = load_model(checkpoint, dev)
    index = load_index(data)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    coco_ids = category_ids(vocab, index.spec.classes) if fmt == "coco-rle" else {}
    count = 0
    for sample in iter_split(index):
        label, score = predict_image(model, sample["jpg"], dev)
        meta = sample.get("json", {})
        if fmt == "imagenets":
            wnid, rel = meta.get("wnid"), meta.get("path")
            if not wnid or not rel:
                raise InputError(f"{sample['__key__']}: no 'wnid'/'path' in its json member; not an ImageNet-S split?")
            stem = rel.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
            target = out_dir / wnid / f"{stem}.png"  # the official layout: <wnid>/<name>.png
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, encode_imagenets(label.astype(np.int64)))
        elif fmt == "png":
            if label.max() > 255:
                atomic_write_bytes(out_dir / f"{sample['__key__']}.png", _png(label.astype(np.uint16), "I;16"))
            else:
                atomic_write_bytes(out_dir / f"{sample['__key__']}.png", _png(label.astype(np.uint8), "L"))
        else:
            results.extend(_coco_results(label, score, meta, coco_ids))
        count += 1
        if progress:
            progress(1)
    if fmt == "coco-rle":
        atomic_write_bytes(out_dir / "results.json", json.dumps(results).encode())
    return PredictReport(count, str(out_dir), fmt)


def category_ids(vocab: list[str], table: Any) -> dict[int, int]:
    """Model class id → COCO category id, matched by class name through the data's class table
    (COCO-20K tables are keyed by the original COCO id; others may carry ``coco_id``)."""
    if table is None:
        raise InputError("coco-rle predictions need a class table in the data index")
    by_name = {e.name.strip().lower(): int(e.extra.get("coco_id", e.id)) for e in table.entries}
    return {i: by_name[n.strip().lower()] for i, n in enumerate(vocab) if n.strip().lower() in by_name}


def _coco_results(label: np.ndarray, score: np.ndarray, meta: dict[str, Any], coco_ids: dict[int, int]) -> list[dict[str, Any]]:
    """One result per predicted class that has a COCO category: its RLE, category id and mean score."""
    from pycocotools import mask as mask_utils

    image_id = meta.get("image_id")
    if image_id is None:
        raise InputError("coco-rle predictions need samples with an 'image_id' in their json member (COCO-20K shards)")
    out = []
    for cid in np.unique(label):
        if int(cid) not in coco_ids:  # background / classes with no COCO category
            continue
        m = label == cid
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": int(image_id), "category_id": coco_ids[int(cid)],
                    "segmentation": rle, "score": float(score[m].mean())})
    return out
