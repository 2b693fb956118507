"""Shared benchmark helpers: realistic generated JPEGs and a best-of-N timer."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


def realistic_jpeg(seed: int, w: int = 500, h: int = 375, quality: int = 90) -> bytes:
    """A photo-like JPEG of about 90 KB at 500x375: smooth structure plus texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.28)]
        img[..., c] = 128 + 80 * np.sin(x * fx + y * fy + ph)
    img += rng.normal(0, 14, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_tree(root: Path, n: int, classes: int = 10) -> list[Path]:
    """n JPEGs spread over class folders (ImageNet train layout); returns the paths."""
    paths = []
    for i in range(n):
        folder = root / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"n{i % classes:08d}_{i}.JPEG"
        p.write_bytes(realistic_jpeg(i % 64) if i >= 64 else realistic_jpeg(i))
        paths.append(p)
    return paths


def best_of(repeats: int, fn: Callable[[], None], setup: Callable[[], None] | None = None) -> float:
    """Fastest wall time of ``repeats`` runs (setup excluded)."""
    best = float("inf")
    for _ in range(repeats):
        if setup:
            setup()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(contenders: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Wall times of each contender over ``rounds`` rounds, run A, B, C, A, B, C... so load changes on a
    shared machine hit every contender alike; report medians."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times
