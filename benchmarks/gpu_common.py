"""Shared pieces of the device check (``gpu_check.py``): sizes, timing, models, generated JPEGs, cosines."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

SECTIONS = ("index", "retrieval", "training", "correctness")


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the full GPU check and the tiny CPU run."""

    model: str = "ViT-L-14-336-quickgelu"
    images: int = 8000
    image_size: tuple[int, int] = (500, 375)
    batch: int = 256
    forward_batches: int = 8
    rows: int = 2_700_000
    dim: int = 768
    categories: int = 80
    k: int = 500
    backbone: str = "vit_base_patch16_224"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    crop: int = 512
    train_batch: int = 16
    iterations: int = 40
    train_samples: int = 256
    train_image: tuple[int, int] = (640, 512)  # draw_shapes needs both sides > 80
    head_channels: int = 256
    check_images: int = 16
    budgets: dict[str, int] = field(default_factory=lambda: {"index": 130, "retrieval": 60, "training": 90,
                                                              "correctness": 80})


FULL = Sizes()
TINY = Sizes(model="datakit-tiny", images=24, image_size=(96, 72), batch=8, forward_batches=3, rows=20_000, dim=32,
             categories=8, k=50, backbone="vit_tiny_patch16_224", backbone_options={"depth": 2}, crop=64, train_batch=2,
             iterations=6, train_samples=8, train_image=(128, 96), head_channels=16, check_images=4,
             budgets={s: 150 for s in SECTIONS})


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """(seconds, result) of one call, the device synchronised on both sides."""
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def model_spec(s: Sizes) -> Any:
    from datakit.clip.model import ModelSpec, register_tiny_model

    if s.model == "datakit-tiny":
        register_tiny_model()
    return ModelSpec(s.model, None)


def precision(device: str) -> str:
    return "fp16" if device.startswith("cuda") else "fp32"


def _write_jpeg(job: tuple[Path, int, int, int]) -> None:
    from common import realistic_jpeg

    path, seed, w, h = job
    path.write_bytes(realistic_jpeg(seed, w, h))


def make_jpegs(folder: Path, n: int, size: tuple[int, int]) -> None:
    """n photo-like JPEGs (256 distinct pictures, repeated under distinct names), written in parallel."""
    import multiprocessing as mp

    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"img{i:06d}.jpg", i % 256, *size) for i in range(n) if not (folder / f"img{i:06d}.jpg").exists()]
    with mp.get_context("fork").Pool(max(1, min(16, os.cpu_count() or 1))) as pool:
        pool.map(_write_jpeg, jobs, chunksize=16)


def cosines(a: Any, b: Any) -> dict[str, float]:
    """Row cosines of two embedding sets, raw and after removing the mean embedding (random towers map every
    input close to one direction; the centred cosine shows whether the image-specific part agrees)."""

    def unit(x: Any) -> Any:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, b = a.astype(np.float64), b.astype(np.float64)
    mean = b.mean(axis=0, keepdims=True)
    raw = (unit(a) * unit(b)).sum(1)
    centred = (unit(a - mean) * unit(b - mean)).sum(1)
    return {"min_cosine": float(raw.min()), "min_centred_cosine": float(centred.min()),
            "other_image_centred_cosine": float((unit(a - mean) * np.roll(unit(b - mean), 1, axis=0)).sum(1).max())}
