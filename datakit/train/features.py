"""Backbone features of a split for the feature-based protocols (probe, distance matching):
``<out>/<key>.npz`` with ``features`` (C, h, w) float16, from a trainer checkpoint or a bare backbone.

PASS's distance matching resizes the short side to 256 and upsamples the features x4 bilinearly;
``resize_short`` and ``upsample`` do the same.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io import atomic_write_bytes
from ..progress import ProgressBar
from ..shards.index import load_index
from ..shards.reader import iter_split
from .checkpoint import load_checkpoint
from .config import ModelConfig
from .distributed import pick_device
from .model import SegModel, build_model
from .predict import model_from_state, prediction_path


@dataclass(frozen=True)
class FeatureOptions:
    checkpoint: str = ""  # a trainer checkpoint, or
    backbone: str = ""  # a backbone name (timm / open_clip:) with ``pretrained``
    pretrained: str = ""
    resize_short: int = 0
    upsample: int = 1
    device: str = "auto"
    progress: bool = False


def _model(opts: FeatureOptions, device: torch.device) -> SegModel:
    if opts.checkpoint:
        return model_from_state(load_checkpoint(opts.checkpoint), device)[0]
    from ..errors import InputError

    if not opts.backbone:
        raise InputError("give --checkpoint or --backbone")
    return build_model(ModelConfig(backbone=opts.backbone, head="probe", pretrained=opts.pretrained), 2).to(device).eval()


@torch.no_grad()
def extract(data: str, out: str, opts: FeatureOptions) -> int:
    """Write one ``<key>.npz`` per sample of ``data``; returns the count."""
    device = pick_device(opts.device)
    model = _model(opts, device)
    index = load_index(data)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    with ProgressBar(index.total, "features", opts.progress, unit="images") as bar:
        for sample in iter_split(index):
            target = prediction_path(root, "png", str(sample["__key__"]), {}).with_suffix(".npz")
            x = torch.from_numpy(np.array(sample["jpg"], dtype=np.uint8)).permute(2, 0, 1)[None].to(device).float()
            if opts.resize_short:
                s = opts.resize_short / min(x.shape[2:])
                x = F.interpolate(x, size=(round(x.shape[2] * s), round(x.shape[3] * s)), mode="bilinear",
                                  align_corners=False, antialias=True)
            feats = model.backbone((x - model.mean) / model.std)
            if opts.upsample > 1:
                feats = F.interpolate(feats, scale_factor=opts.upsample, mode="bilinear")
            buf = io.BytesIO()
            np.savez(buf, features=feats[0].float().cpu().numpy().astype(np.float16))
            atomic_write_bytes(target, buf.getvalue())
            count += 1
            bar.advance(1)
    return count
