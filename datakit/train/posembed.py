"""Resampling a ViT's absolute position embedding to another token grid (any input size, any checkpoint)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int], prefix: int,
                       old_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, prefix + h*w, C) or (prefix + h*w, C) position embeddings resampled to ``grid`` (bicubic, align_corners=False)."""
    squeeze = pos.dim() == 2
    p = pos[None] if squeeze else pos
    n = p.shape[1] - prefix
    if old_grid is None:
        side = int(round(n**0.5))
        if side * side != n:
            raise InputError(f"position embedding of {n} tokens is not a square grid; cannot resample it")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(grid):
        return pos
    head, body = p[:, :prefix], p[:, prefix:]
    body = body.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2).float()
    body = F.interpolate(body, size=tuple(grid), mode="bicubic", align_corners=False)
    body = body.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(p.dtype)
    out = torch.cat([head, body], dim=1)
    return out[0] if squeeze else out
