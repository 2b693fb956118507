"""Device check section on the training side: shards -> trainer step with AMP vs synthetic tensors, and a DDP step."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_common import Sizes, timed

from datakit.sources.demo import DemoSource, draw_shapes

@dataclass(frozen=True)
class Shapes(DemoSource):
    """The demo's shape images (only its ``synthetic`` split) at another size."""

    width: int = 640
    height: int = 512

    def splits(self) -> list[str]:
        return ["synthetic"]

    def load(self, record: Any) -> Any:
        from datakit.sources.base import Sample

        seed = record.payload.seed
        img, label = draw_shapes(seed, self.width, self.height)
        return Sample(record.key, img, {"seg.png": label}, meta={"seed": seed}, origin=record.key)


def make_shards(s: Sizes, out: Path) -> Path:
    """A split of shape images with pixel labels at ``train_image`` size, written by datakit's build."""
    from datakit.pipeline import BuildOptions, build

    if not (out / "synthetic" / "index.json").exists():
        workers = max(1, min(16, os.cpu_count() or 1))
        source = Shapes(s.train_samples, width=s.train_image[0], height=s.train_image[1])
        build(source, out, ["synthetic"], BuildOptions(shard_size=32, workers=workers, progress=False))
    return out / "synthetic"


def steady_rate(log: Path, warm: int) -> float:
    """samples/s between the first logged step past ``warm`` and the last (the log's rates are cumulative)."""
    recs = [json.loads(line) for line in log.read_text().splitlines() if '"samples_per_s"' in line]
    a = next((r for r in recs if r["step"] > warm), recs[0])
    b = recs[-1]
    if b["step"] == a["step"]:
        return float(b["samples_per_s"])
    # rate = step * batch / elapsed, so step / rate = elapsed / batch, and this is (steps * batch) / elapsed
    ta, tb = a["step"] / a["samples_per_s"], b["step"] / b["samples_per_s"]
    return (b["step"] - a["step"]) / (tb - ta)


def train_config(s: Sizes, data: Path, out: Path, device: str) -> Any:
    from datakit.train.config import parse_config

    workers = 0 if not device.startswith("cuda") else max(1, min(12, (os.cpu_count() or 2) - 2))
    return parse_config({
        "data": [{"path": str(data)}],
        "model": {"backbone": s.backbone, "head": "fcn", "head_channels": s.head_channels,
                  "options": dict(s.backbone_options)},
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "train": {"out": str(out), "iterations": s.iterations, "batch_size": s.train_batch, "crop": s.crop,
                  "workers": workers, "log_every": 1, "amp": True, "device": device},
    })


def synthetic_rate(cfg: Any, classes: int, device: str, steps: int) -> float:
    """samples/s of the trainer's step (same model, optimizer, loss, autocast) on tensors already on the device."""
    import torch

    from datakit.train.loop import make_optimizer
    from datakit.train.losses import pixel_ce
    from datakit.train.model import build_model

    dev = torch.device(device)
    model = build_model(cfg.model, classes).to(dev).train()
    opt = make_optimizer(cfg, model)
    b, c = cfg.train.batch_size, cfg.train.crop
    images = torch.randint(0, 256, (b, 3, c, c), dtype=torch.uint8, device=dev)
    target = torch.randint(0, classes, (b, c, c), device=dev)
    amp = dev.type == "cuda"

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = pixel_ce(model(images).float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sec, _ = timed(lambda: [step() for _ in range(steps)], device)
    return b * steps / sec


def ddp_step(cfg: Any, classes: int, device: str) -> dict[str, Any]:
    """One DDP training step in a 1-process group (nccl on GPU, gloo on CPU); its gradients must equal a plain step's."""
    import copy
    import socket

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from datakit.train.losses import pixel_ce
    from datakit.train.model import build_model

    backend = "nccl" if device.startswith("cuda") else "gloo"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        dev = torch.device(device)
        torch.manual_seed(0)
        plain = build_model(cfg.model, classes).to(dev).train()
        wrapped = DistributedDataParallel(copy.deepcopy(plain), device_ids=[dev.index or 0] if dev.type == "cuda" else None)
        c = min(cfg.train.crop, 256)
        images = torch.randint(0, 256, (2, 3, c, c), dtype=torch.uint8, device=dev)
        target = torch.randint(0, classes, (2, c, c), device=dev)
        losses = []
        for net in (plain, wrapped):
            torch.manual_seed(1)  # same dropout masks
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = pixel_ce(net(images).float(), target)
            loss.backward()
            losses.append(float(loss.detach()))
        diff = max(float((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-12))
                   for p, q in zip(wrapped.module.parameters(), plain.parameters()) if q.grad is not None)
    finally:
        dist.destroy_process_group()
    return {"backend": backend, "loss": round(losses[1], 5), "loss_plain": round(losses[0], 5),
            "max_relative_grad_difference": diff, "ok": diff < 1e-3 and all(math.isfinite(v) for v in losses)}


def section_training(s: Sizes, device: str, work: Path) -> dict[str, Any]:
    from datakit.train.loop import train

    t = time.perf_counter()
    data = make_shards(s, work / "train-shards")
    made = time.perf_counter() - t
    cfg = train_config(s, data, work / "run", device)
    result = train(cfg, log=lambda m: None)
    shards = steady_rate(Path(cfg.train.out) / "log.jsonl", min(5, s.iterations // 2))
    synthetic = synthetic_rate(cfg, 4, device, max(3, s.iterations // 2))
    return {"backbone": s.backbone, "crop": s.crop, "batch": s.train_batch, "iterations": result.iterations,
            "amp": "bf16" if device.startswith("cuda") else "off (CPU)", "loader_workers": cfg.train.workers,
            "seconds_making_shards": round(made, 1), "shards_rate": round(shards, 2),
            "synthetic_rate": round(synthetic, 2), "ratio": round(shards / synthetic, 3), "goal": 0.9,
            "ok": shards / synthetic >= 0.9, "final_loss": round(result.losses[-1], 4),
            "ddp": ddp_step(cfg, 4, device)}
