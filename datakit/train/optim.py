"""Optimizer parameter groups (layer-wise LR decay, head LR multiplier, no decay on norms/biases/
position embeddings) and the LR schedule (linear warm-up, then poly / cosine to ``min_lr``).

Layer-wise decay follows mmseg's ``LearningRateDecayOptimizerConstructor`` (BEiT/MAE): embeddings
are layer 0, block i is layer i + 1, everything else (final norm, head) is layer L + 1, and a
parameter of layer l gets ``lr * decay ** (L + 1 - l)``. Parameters with one dimension, names
ending in ``.bias``, and position / class tokens get no weight decay unless ``decay_norm_bias``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .config import Config, OptimConfig


def _no_decay(name: str, param: torch.Tensor, backbone: nn.Module) -> bool:
    tokens = getattr(backbone, "NO_DECAY", ())
    last = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or name.endswith(".bias") or last in tokens


def param_groups(model: nn.Module, o: OptimConfig) -> list[dict[str, Any]]:
    """One group per (LR scale, weight decay) pair; each group carries its ``lr_scale``."""
    backbone: Any = model.backbone
    layers = int(getattr(backbone, "num_layers", 0))
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("backbone."):
            sub = name[len("backbone."):]
            layer = backbone.layer_id(sub) if hasattr(backbone, "layer_id") and layers else layers + 1
            scale = o.layer_decay ** (layers + 1 - layer)
            decay = 0.0 if (not o.decay_norm_bias and _no_decay(sub, param, backbone)) else o.weight_decay
        else:  # the head
            scale = o.head_lr_mult
            decay = 0.0 if (not o.decay_norm_bias and (param.ndim <= 1 or name.endswith(".bias"))) else o.weight_decay
        group = groups.setdefault((scale, decay), {"params": [], "lr_scale": scale, "weight_decay": decay, "names": []})
        group["params"].append(param)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, o)]
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)  # type: ignore[arg-type]


def learning_rate(cfg: Config, step: int) -> float:
    """The base LR at optimizer step ``step`` (0-based), as mmseg's iteration-based hooks compute it:
    the regular value (poly / cosine over all iterations, down to ``min_lr``), scaled during warm-up by
    ``1 - (1 - step / warmup) * (1 - warmup_ratio)``."""
    o, total = cfg.optim, cfg.train.iterations
    progress = min(1.0, step / max(1, total))
    if o.schedule == "poly":
        regular = (o.lr - o.min_lr) * (1 - progress) ** o.power + o.min_lr
    elif o.schedule == "step":
        regular = o.lr * o.gamma ** sum(1 for m in o.milestones if step >= m)
    elif o.schedule == "cosine":
        regular = o.min_lr + (o.lr - o.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        regular = o.lr
    if o.warmup and step < o.warmup:
        return regular * (1 - (1 - step / o.warmup) * (1 - o.warmup_ratio))
    return regular


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
