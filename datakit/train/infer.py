"""Whole-image inference: test-time resize (short side), large-image cap, sliding window, flip.

Logits are computed at a working size (the image, or its short side resized to ``resize_short``),
then brought to the output size bilinearly a few classes at a time (920 classes at full
resolution would need gigabytes), keeping the running arg-max and log-sum-exp, so the result
equals upsampling all logits at once. Images over ``max_res``² pixels are labelled at long side
``max_res`` and their ids upsampled nearest, as LUSSeg's PASS and ImageNetSegModel do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import TestConfig

CLASS_CHUNK = 64


@dataclass(frozen=True)
class InferOptions:
    """``TestConfig`` resolved for one run (crop and stride filled in)."""

    resize_short: int = 0
    max_res: int = 0
    mode: str = "whole"
    crop: int = 512
    stride: int = 341
    flip: bool = False

    @classmethod
    def of(cls, test: TestConfig, train_crop: int) -> "InferOptions":
        crop = test.crop or train_crop
        return cls(test.resize_short, test.max_res, test.mode, crop, test.stride or max(1, (2 * crop) // 3), test.flip)


def _slide(model: torch.nn.Module, x: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """mmseg ``slide_inference``: overlapping windows (the last ones flush with the border), logits averaged."""
    _, _, h, w = x.shape
    rows = max(h - crop + stride - 1, 0) // stride + 1
    cols = max(w - crop + stride - 1, 0) // stride + 1
    total: torch.Tensor | None = None
    count = torch.zeros((1, 1, h, w), device=x.device)
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, h), min(c * stride + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            out = model(x[:, :, y1:y2, x1:x2]).float()
            if total is None:
                total = torch.zeros((1, out.shape[1], h, w), device=x.device)
            total[:, :, y1:y2, x1:x2] += out
            count[:, :, y1:y2, x1:x2] += 1
    assert total is not None
    return total / count


def working_logits(model: torch.nn.Module, x: torch.Tensor, opts: InferOptions) -> torch.Tensor:
    """(1, C, h, w) logits of a (1, 3, h, w) float image at its own size, with slide / flip as configured."""
    def run(inp: torch.Tensor) -> torch.Tensor:
        return _slide(model, inp, opts.crop, opts.stride) if opts.mode == "slide" else model(inp).float()

    logits = run(x)
    if opts.flip:
        logits = (logits + run(x.flip(3)).flip(3)) / 2
    return logits


def _to_size(logits: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Arg-max class and its softmax probability after bilinear resizing, CLASS_CHUNK classes at a time."""
    best: torch.Tensor | None = None
    label: torch.Tensor | None = None
    lse: torch.Tensor | None = None
    for start in range(0, logits.shape[1], CLASS_CHUNK):
        part = logits[:, start : start + CLASS_CHUNK]
        if tuple(part.shape[2:]) != tuple(size):
            part = F.interpolate(part, size=size, mode="bilinear", align_corners=False)
        value, index = part[0].max(0)
        chunk_lse = torch.logsumexp(part[0], 0)
        if best is None or label is None or lse is None:
            best, label, lse = value, index, chunk_lse
        else:
            better = value > best
            best = torch.where(better, value, best)
            label = torch.where(better, index + start, label)
            lse = torch.logaddexp(lse, chunk_lse)
    assert best is not None and label is not None and lse is not None
    return label, (best - lse).exp()


@torch.no_grad()
def predict_image(model: torch.nn.Module, image: np.ndarray, device: torch.device,
                  opts: InferOptions = InferOptions()) -> tuple[np.ndarray, np.ndarray]:
    """Class ids (int64) and their softmax scores (float32) at the image's size."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].to(device).float()
    if opts.resize_short and min(h, w) != opts.resize_short:
        s = opts.resize_short / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    logits = working_logits(model, x, opts)
    capped = bool(opts.max_res) and h * w > opts.max_res**2
    out_size = (opts.max_res, max(1, round(w * opts.max_res / h))) if capped and h >= w else \
        (max(1, round(h * opts.max_res / w)), opts.max_res) if capped else (h, w)
    label, score = _to_size(logits, out_size)
    if capped:
        stack = torch.stack([label.float(), score])[None]
        label_f, score = F.interpolate(stack, size=(h, w), mode="nearest")[0]
        label = label_f.long()
    return label.cpu().numpy().astype(np.int64), score.cpu().numpy().astype(np.float32)
