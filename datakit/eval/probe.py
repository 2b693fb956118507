"""Linear probe on frozen features (MaskContrast ``linear_finetune.py``), in torch, CPU or GPU.

Only a 1x1 convolution is trained (weights N(0, 0.01), bias 0) on precomputed features; its
logits are bilinearly upsampled to the label size and trained with pixel cross-entropy that
ignores the ignore id. MaskContrast's schedule: SGD lr 0.1, momentum 0.9, weight decay 1e-4,
step decay x0.1 at epoch 25 of 60, batch 16. Scoring is the confusion-matrix mIoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .confusion import Confusion
from .semseg import SemsegReport, report


@dataclass(frozen=True)
class ProbeOptions:
    """Training schedule of the probe (MaskContrast's values by default)."""

    epochs: int = 60
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_epochs: tuple[int, ...] = (25,)
    gamma: float = 0.1
    batch_size: int = 16
    ignore_index: int = 255
    seed: int = 0
    device: str = "cpu"


def _torch():
    """torch, imported only when the probe runs."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is in the train extra
        from ..errors import InputError

        raise InputError("the linear probe needs torch: pip install 'datakit[train]'") from err
    return torch


def _logits(head, feats, size):
    """Probe logits, bilinearly upsampled to the label size when it differs."""
    torch = _torch()
    out = head(feats)
    if out.shape[-2:] != tuple(size):
        out = torch.nn.functional.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
    return out


def train_probe(features, labels, num_classes: int, opts: ProbeOptions = ProbeOptions()):
    """Fit a 1x1 conv on (N, D, h, w) frozen features to (N, H, W) labels; returns the conv."""
    torch = _torch()
    feats = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    target = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    gen = torch.Generator().manual_seed(opts.seed)
    head = torch.nn.Conv2d(feats.shape[1], num_classes, kernel_size=1)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.01, generator=gen)
        head.bias.zero_()
    head.to(opts.device)
    optim = torch.optim.SGD(head.parameters(), lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=list(opts.decay_epochs), gamma=opts.gamma)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=opts.ignore_index)
    for _ in range(opts.epochs):
        order = torch.randperm(feats.shape[0], generator=gen)
        for start in range(0, feats.shape[0], opts.batch_size):
            idx = order[start : start + opts.batch_size]
            x, y = feats[idx].to(opts.device), target[idx].to(opts.device)
            loss = loss_fn(_logits(head, x, y.shape[-2:]), y)
            optim.zero_grad()
            loss.backward()
            optim.step()
        sched.step()
    return head.eval()


def predict_probe(head, features, size: tuple[int, int], device: str = "cpu", batch_size: int = 16) -> np.ndarray:
    """(N, H, W) int64 class maps of the trained probe, logits upsampled bilinearly to ``size``."""
    torch = _torch()
    feats = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    out = []
    with torch.no_grad():
        for start in range(0, feats.shape[0], batch_size):
            logits = _logits(head, feats[start : start + batch_size].to(device), size)
            out.append(logits.argmax(dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.int64)


def evaluate_probe(head, features, labels, num_classes: int, class_names: list[str] | None = None,
                   ignore_index: int = 255, device: str = "cpu") -> SemsegReport:
    """Confusion-matrix scores of the probe's predictions against ``labels`` (N, H, W)."""
    labels = np.asarray(labels)
    pred = predict_probe(head, features, labels.shape[-2:], device)
    conf = Confusion.empty(num_classes)
    for p, g in zip(pred, labels):
        conf.update(g, p, ignore_index)
    names = class_names or [str(i) for i in range(num_classes)]
    return report(conf, names, len(labels))
