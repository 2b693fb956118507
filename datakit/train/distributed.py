"""torchrun integration: initialise the process group from the environment when WORLD_SIZE > 1."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from ..errors import InputError

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def setup_distributed() -> Dist:
    """gloo on CPU, nccl on GPU; a no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), local)


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r} (auto, cpu, cuda, cuda:1 ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but no CUDA GPU is available")
    return device


def sync_batchnorm(model: M, dist: Dist, device: torch.device, enabled: bool) -> M:
    """Every BatchNorm inside ``model`` becomes a SyncBatchNorm, in place, when several GPUs train
    together (per-GPU segmentation batches are too small for good statistics). CPU (gloo) runs keep
    plain BatchNorm: the sync kernels are CUDA-only."""
    if enabled and dist.world_size > 1 and device.type == "cuda":
        for name, child in model.named_children():
            model.add_module(name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    return model
