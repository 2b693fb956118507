"""Benchmark: images/s of ``datakit index`` against a ZUTIS-style embedding loop, same images, same model.

The ZUTIS loop (utils/extract_image_embeddings.py) is a DataLoader over file paths with the same
number of workers, encode_image, L2-normalise, and a dict of float32 vectors. datakit adds part
files, fp16 storage and resumability; this measures what that costs or saves.
Random weights are fine for throughput (no download).

    python benchmarks/bench_index.py                                   # CPU, ViT-S-32, 96 images
    python benchmarks/bench_index.py --model ViT-L-14-336-quickgelu --images 4096 --workers 16   # on a GPU
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datakit.clip.embed import IndexOptions, build_index  # noqa: E402
from datakit.clip.images import parse_input  # noqa: E402
from datakit.clip.model import ModelSpec, load_model  # noqa: E402


def make_images(folder: Path, n: int, size: tuple[int, int]) -> None:
    """ImageNet-sized JPEGs with some structure (smooth gradients + noise), q=90."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = (xx * rng.uniform(0.1, 0.5) + yy * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
        arr = np.clip(base[..., None] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:06d}.jpg", quality=90)


class _Files:
    """The ZUTIS dataset: a list of paths, PIL open + convert RGB + the model's transform."""

    def __init__(self, paths: list[str], transform: object) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> object:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB"))  # type: ignore[operator]


def zutis_loop(folder: Path, spec: ModelSpec, device: str, batch: int, workers: int) -> tuple[float, int]:
    import torch
    from torch.utils.data import DataLoader

    loaded = load_model(spec, device)
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    loader = DataLoader(_Files(paths, loaded.transform), batch_size=batch, num_workers=workers)
    out: dict[str, torch.Tensor] = {}
    dtype = torch.float16 if loaded.precision == "fp16" else torch.float32
    t0 = time.perf_counter()
    i = 0
    with torch.inference_mode():
        for x in loader:
            f = loaded.model.encode_image(x.to(loaded.device, dtype=dtype))
            f = (f / f.norm(dim=1, keepdim=True)).float().cpu()
            for row in f:
                out[os.path.basename(paths[i])] = row
                i += 1
    return time.perf_counter() - t0, len(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--size", default="500x375", help="WxH of the generated JPEGs (ImageNet's typical size)")
    ap.add_argument("--model", default="ViT-S-32")
    ap.add_argument("--pretrained", default="none", help="'none' = random weights")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=0, help="0: 256 on GPU, 32 on CPU")
    ap.add_argument("--workers", type=int, default=max(1, min(16, (os.cpu_count() or 2) - 1)))
    ap.add_argument("--part-size", type=int, default=1000)
    ap.add_argument("--folder", default=None, help="reuse / keep the images here")
    ap.add_argument("--decode", default="pil", help="pil (as ZUTIS) | pil-draft | device (JPEGs decoded on the device)")
    args = ap.parse_args()

    tmp = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="bench-index-"))
    images = tmp / "images"
    w, h = (int(v) for v in args.size.split("x"))
    if not images.is_dir() or len(list(images.glob("*.jpg"))) != args.images:
        shutil.rmtree(images, ignore_errors=True)
        make_images(images, args.images, (w, h))
    spec = ModelSpec(args.model, None if args.pretrained.lower() == "none" else args.pretrained)
    probe = load_model(spec, args.device)
    batch = args.batch_size or (256 if probe.device.startswith("cuda") else 32)
    print(f"{args.images} JPEGs {w}x{h}; model {probe.identity['name']} ({args.pretrained}) on {probe.device} "
          f"{probe.precision}; batch {batch}; {args.workers} loader workers; cpus {os.cpu_count()}")
    del probe

    zs, zn = zutis_loop(images, spec, args.device, batch, args.workers)
    out = tmp / "index"
    shutil.rmtree(out, ignore_errors=True)
    opts = IndexOptions(spec, args.device, batch_size=batch, workers=args.workers, part_size=args.part_size, progress=False,
                        decode=args.decode)
    rep = build_index([parse_input(str(images))], out, opts, notify=lambda m: None)
    t = time.perf_counter()
    again = build_index([parse_input(str(images))], out, opts, notify=lambda m: None)
    resume_s = time.perf_counter() - t

    print(f"  zutis loop (dict of fp32)     {zn / zs:9.1f} images/s  ({zs:.2f}s)")
    print(f"  datakit index (parts, fp16)   {rep.rate:9.1f} images/s  ({rep.seconds:.2f}s)   ratio {rep.rate / (zn / zs):.2f}x"
          f"   (steady after the first batch: {rep.steady_rate:.1f} images/s; --decode {args.decode})")
    print(f"  datakit rerun (all parts done) {resume_s:.2f}s, {again.parts_written} part(s) recomputed")
    if not args.folder:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
