"""Training-step throughput of the trainer's model, loss on full-resolution logits vs labels downsampled
x8 (mmseg ``downsample_label_ratio=8``), measured side by side (interleaved rounds, medians).

    python benchmarks/bench_train.py [--backbone vit_small_patch16_224] [--classes 920] [--size 224] [--batch 4]

forward + loss + backward + AdamW step; prints samples/s of both and their ratio, plus the size
of the logits each computes. On a GPU machine pass --device cuda.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from datakit.train.config import ModelConfig
from datakit.train.losses import downsample_labels, segmentation_loss
from datakit.train.model import build_model


def make_step(model, opt, images, target, ratio):
    size = None if ratio <= 1 else (images.shape[2] // ratio, images.shape[3] // ratio)
    labels = downsample_labels(target, ratio)

    def step() -> int:
        logits = model(images, size) if size else model(images)
        loss = segmentation_loss(logits, "pixel", labels, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return logits.numel() * 4

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", default="vit_small_patch16_224")
    ap.add_argument("--classes", type=int, default=920)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=args.backbone, head="fcn", num_convs=0, dropout=0.0), args.classes).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    images = torch.randint(0, 255, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=args.device)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size), device=args.device)
    steps = {"full": make_step(model, opt, images, target, 1), "x8": make_step(model, opt, images, target, 8)}
    logits_bytes = {k: s() for k, s in steps.items()}  # warm-up
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    rate = {k: args.batch / statistics.median(v) for k, v in times.items()}
    print(f"{args.backbone} + FCN(num_convs=0), {args.classes} classes, {args.size}px, batch {args.batch}, "
          f"{args.device}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds (median)")
    for k in steps:
        print(f"  loss on {k:4s} labels: {rate[k]:7.2f} samples/s, logits {logits_bytes[k] / 2**20:7.1f} MiB")
    print(f"  label downsampling x8: {rate['x8'] / rate['full']:.2f}x the samples/s of full-resolution logits")


if __name__ == "__main__":
    main()
