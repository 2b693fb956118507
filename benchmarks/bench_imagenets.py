"""Benchmark: build ImageNet-S50 into shards and into the official folder layout (copies).

Generates an ImageNet-like tree whose names come from the real S50 lists, with realistic JPEGs
(500x375, about 90 KB, noisy content), then times ``build`` (format wds) and ``export`` (format
folder, ``link=copy``; and ``link=symlink`` for reference) on the same tree and prints images/s
and the ratio. ``--scale 1`` is the full S50 (64,431 train images, 6 GB); the default is small.

    python benchmarks/bench_imagenets.py --scale 0.02 --workers 2
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.imagenets.lists import PUBLISHED, load_lists
from datakit.imagenets.source import export, make_source

VARIANTS = 24


def realistic_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` distinct 500x375 photos-like JPEGs (smooth shapes + sensor-like noise), ~90 KB each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    out = []
    for _ in range(n):
        img = np.zeros((375, 500, 3), np.float32)
        for c in range(3):
            fx, fy, ph = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
            img[:, :, c] = 128 + 80 * np.sin(xx * fx + ph) * np.cos(yy * fy)
        img += rng.normal(0, 16, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_tree(root: Path, scale: float) -> dict[str, int]:
    """Write the tree; returns images per split that exist in it."""
    lists = load_lists(50)
    jpegs = realistic_jpegs(VARIANTS)
    k = 0

    def put(path: Path) -> None:
        """Write the next variant at ``path``."""
        nonlocal k
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpegs[k % VARIANTS])
        k += 1

    per_class = max(0, round(PUBLISHED[50]["train"] / 50 * scale) - 10)
    for e in lists.semi:
        put(root / "train" / e.source_wnid / e.name)
    for wnid in lists.wnids:
        for i in range(per_class):
            put(root / "train" / wnid / f"{wnid}_{900000 + i}.JPEG")
    counts = {"train": len(lists.semi) + 50 * per_class, "train-semi": len(lists.semi)}
    for split in ("validation", "test"):
        entries = getattr(lists, split)
        take = entries[: max(1, math.ceil(len(entries) * min(scale, 1.0)))]
        for e in take:
            put(root / "val" / e.label / e.name)
        counts[split] = len(take)
    return counts


def main() -> None:
    """Generate the tree, time both outputs, print the rates and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.02, help="fraction of the real S50 size (1 = 64,431 train images)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-imagenets-"))
    try:
        t0 = time.perf_counter()
        counts = make_tree(work / "imagenet", args.scale)
        total = sum(counts.values())
        size = sum(p.stat().st_size for p in (work / "imagenet").rglob("*.JPEG"))
        print(f"tree: {total:,} images ({counts}), {size / 1e6:,.0f} MB, "
              f"mean {size / max(1, sum(1 for _ in (work / 'imagenet').rglob('*.JPEG'))) / 1e3:.0f} KB, "
              f"generated in {time.perf_counter() - t0:.1f} s")
        params = {"subset": 50, "imagenet": str(work / "imagenet"), "allow_missing": args.scale < 1}
        opts = BuildOptions(workers=args.workers, progress=False)
        warnings.simplefilter("ignore", UserWarning)  # missing val/test images at scale < 1

        rep = build(make_source(params), work / "wds", opts=opts)
        wds_rate = rep.samples_written / rep.seconds
        print(f"wds shards         : {rep.samples_written:,} images in {rep.seconds:.2f} s = {wds_rate:,.0f} images/s")

        rates = {}
        for link in ("copy", "symlink"):
            t = time.perf_counter()
            frep = export({**params, "format": "folder", "link": link}, str(work / f"folder-{link}"), opts)
            seconds = time.perf_counter() - t
            placed = sum(s.samples for s in frep.splits)
            rates[link] = placed / seconds
            print(f"folder ({link:7s})   : {placed:,} images in {seconds:.2f} s = {rates[link]:,.0f} images/s")
        print(f"ratio folder-copy / wds = {rates['copy'] / wds_rate:.2f}  "
              f"(workers={args.workers}, files read from the page cache in both)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
