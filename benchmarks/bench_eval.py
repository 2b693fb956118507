"""ImageNet-S evaluation throughput: datakit's CPU evaluator against the official per-image code
run on CPU (its torch.histc metrics and per-class boundary erosion, as a user would run it
without CUDA), on the same generated 500x375 GT/prediction PNG pairs.

    python benchmarks/bench_eval.py [--images 200] [--workers 2] [--repeats 2]

The baseline's per-class erosion uses scipy's separable minimum filter (OpenCV is not a
datakit dependency); it computes the same bands as the official ``cv2.erode`` loop. PNG
decoding is included on both sides.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
import helpers_eval  # noqa: E402
from common import best_of  # noqa: E402

from datakit import catalog  # noqa: E402
from datakit.eval.gt import decode_id_png  # noqa: E402
from datakit.eval.runner import EvalOptions, evaluate_imagenets  # noqa: E402


def fast_mask_to_boundary(mask: np.ndarray, ratio: float = 0.03) -> np.ndarray:
    """The official band (mask minus a (2d+1)-square erosion with a zero border), one filter."""
    h, w = mask.shape
    d = max(1, int(round(ratio * np.sqrt(h**2 + w**2))))
    eroded = ndimage.minimum_filter(mask.astype(np.uint8), size=2 * d + 1, mode="constant", cval=0)
    return mask.astype(bool) & ~eroded.astype(bool)


def make_pairs(root: Path, n: int, subset: int) -> list[tuple[Path, Path]]:
    wnids = catalog.read_lines(f"imagenets/categories/ImageNetS_categories_im{subset}.txt")
    pairs = []
    for i in range(n):
        wnid = wnids[i % len(wnids)]
        cls = i % len(wnids) + 1
        gt = helpers_eval.blob_gt(i, 375, 500, [cls, (cls * 7) % subset + 1])
        pred = helpers_eval.blob_gt(i + 10_000, 375, 500, [cls, (cls * 3) % subset + 1], ignore=False)
        name = f"ILSVRC2012_val_{i:08d}.png"
        g, p = root / "gt" / wnid / name, root / "pred" / wnid / name
        helpers_eval.write_id_png(g, gt)
        helpers_eval.write_id_png(p, pred)
        pairs.append((g, p))
    return pairs


def official_on_cpu(pairs: list[tuple[Path, Path]], subset: int) -> None:
    for g, p in pairs:
        gt = decode_id_png(str(g))
        pred = decode_id_png(str(p))
        helpers_eval.official_image(gt, pred, subset)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--subset", type=int, default=919)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    helpers_eval.mask_to_boundary = fast_mask_to_boundary
    import torch

    torch.set_num_threads(1)  # the baseline's best here: tiny CPU ops stall on spin-waits with more threads
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pairs = make_pairs(root, args.images, args.subset)
        n = len(pairs)
        base = best_of(args.repeats, lambda: official_on_cpu(pairs, args.subset))
        print(f"official code on CPU (1 process): {n / base:8.1f} images/s")
        one = best_of(args.repeats, lambda: evaluate_imagenets(str(root / "pred"), str(root / "gt"), args.subset,
                                                               opts=EvalOptions(workers=1)))
        print(f"datakit, 1 process:               {n / one:8.1f} images/s  ({base / one:.2f}x the baseline)")
        t0 = time.perf_counter()
        many = best_of(args.repeats, lambda: evaluate_imagenets(str(root / "pred"), str(root / "gt"), args.subset,
                                                                opts=EvalOptions(workers=args.workers)))
        print(f"datakit, {args.workers} processes:             {n / many:8.1f} images/s  ({base / many:.2f}x the baseline)"
              f"  [{time.perf_counter() - t0:.1f} s incl. repeats]")


if __name__ == "__main__":
    main()
