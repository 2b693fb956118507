"""Training-step throughput of the thin trainer's model: forward + backward + AdamW step.

    python benchmarks/bench_train.py [--backbone vit_small_patch16_224] [--size 224] [--batch 8] [--steps 5]

Prints samples/s on the current device (CPU here; pass --device cuda on a GPU machine, e.g. with
--backbone vit_base_patch16_224 for the ViT-B/16 figure), with fp32 and, on GPU, bf16 autocast.
"""

from __future__ import annotations

import argparse
import time

import torch

from datakit.train.config import ModelConfig
from datakit.train.losses import pixel_ce
from datakit.train.model import build_model


def run(backbone: str, size: int, batch: int, steps: int, device: str, amp: bool) -> float:
    model = build_model(ModelConfig(backbone=backbone, head="fcn"), 150).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, device=device)
    target = torch.randint(0, 150, (batch, size, size), device=device)

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            loss = pixel_ce(model(images).float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", default="vit_small_patch16_224")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    print(f"{args.backbone} + FCN head, {args.size}px, batch {args.batch}, {args.device}, {torch.get_num_threads()} threads")
    rate = run(args.backbone, args.size, args.batch, args.steps, args.device, False)
    print(f"fp32 train step: {rate:8.2f} samples/s")
    if args.device.startswith("cuda"):
        amp = run(args.backbone, args.size, args.batch, args.steps, args.device, True)
        print(f"bf16 train step: {amp:8.2f} samples/s ({amp / rate:.2f}x fp32)")


if __name__ == "__main__":
    main()
