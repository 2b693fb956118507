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
