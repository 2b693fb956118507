"""Losses: pixel cross-entropy with an ignore id, and LarvSeg's image-level loss for mask-free samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # labels are mapped into the model's vocabulary; anything unmapped becomes this


def pixel_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels (target already in the model's ids, ignore = -100)."""
    if not (target != IGNORE).any():
        return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
    return F.cross_entropy(logits, target.long(), ignore_index=IGNORE)


def image_level_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LarvSeg: mean-pool each image's per-pixel class logits, then cross-entropy on its image label."""
    pooled = logits.mean(dim=(2, 3))
    keep = labels != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(pooled[keep], labels[keep].long())


def downsample_labels(target: torch.Tensor, ratio: int) -> torch.Tensor:
    """mmseg ``downsample_label_ratio``: (B, H, W) labels resized nearest to (H // ratio, W // ratio)."""
    if ratio <= 1:
        return target
    size = (max(1, target.shape[1] // ratio), max(1, target.shape[2] // ratio))
    return F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].long()


def restrict(logits: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Logits of classes outside ``keep`` (a boolean mask over classes) set to -inf: the softmax spans
    only the dataset's own classes (LarvSeg); ``None`` keeps the union softmax."""
    if keep is None or bool(keep.all()):
        return logits
    return logits.masked_fill(~keep.view(1, -1, *([1] * (logits.dim() - 2))), float("-inf"))


def segmentation_loss(logits: torch.Tensor, kind: str, target: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Pixel CE (``kind='pixel'``, labels already at the logits' size) or LarvSeg's image-level CE."""
    raw = logits.float()
    if not (target != IGNORE).any():
        return raw.sum() * 0.0  # keeps the graph (DDP needs every parameter used); -inf logits would make NaN
    restricted = restrict(raw, keep)
    return pixel_ce(restricted, target) if kind == "pixel" else image_level_ce(restricted, target)
