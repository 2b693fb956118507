"""Loader throughput: datakit.stream (threads, processes) vs loose files + a plain DataLoader vs
webdataset's WebDataset, and the raw JPEG+PNG decode rate (decode-only loop over bytes in memory).

Samples are 500x375 photo-like JPEGs (~90 KB) with 8-bit PNG label maps (Voronoi regions of up
to 150 classes). Every contender decodes both members to uint8 arrays with PIL and yields
batches; the files are read once beforehand so the page cache is warm for all of them. Rates
are steady-state samples/s (from the first batch to the end of the epoch). A shared machine's
load changes from minute to minute, so contenders run in interleaved rounds (the first one
rotating) and the table gives medians, ratios taken within each round, and CPU ms per sample
(all processes and threads of a contender). Two ceilings: one decoder's rate times the workers
(ideal scaling) and ``w`` decoders run side by side in forked processes (what this machine gives
``w`` decoders at once; on a 2-core VM the two differ by the machine, not by the loader).

    python benchmarks/bench_loader.py --count 2000 --workers 1 2 --rounds 5
"""

from __future__ import annotations

import argparse
import gc
import io
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from common import realistic_jpeg
from datakit.shards.index import load_index, make_index, write_index
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
from datakit.shards.writer import ShardWriter
from datakit.stream.dataset import loader


def realistic_mask(seed: int, w: int = 500, h: int = 375, classes: int = 150) -> bytes:
    """An 8-bit PNG label map of a dozen polygonal regions (nearest of random seed points)."""
    rng = np.random.default_rng(seed + 10_000)
    pts = rng.uniform(0, 1, (12, 2)) * (h, w)
    labels = rng.integers(0, classes, 12).astype(np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    nearest = ((y[..., None] - pts[:, 0]) ** 2 + (x[..., None] - pts[:, 1]) ** 2).argmin(-1)
    buf = io.BytesIO()
    Image.fromarray(labels[nearest], "L").save(buf, format="PNG")
    return buf.getvalue()


def make_data(root: Path, count: int, unique: int, shard_size: int) -> tuple[Path, Path, list[tuple[bytes, bytes]]]:
    """Shards (with index) and the same samples as loose files; ``unique`` distinct images, cycled."""
    pairs = [(realistic_jpeg(i), realistic_mask(i)) for i in range(min(unique, count))]
    split, loose = root / "shards" / "train", root / "loose"
    split.mkdir(parents=True)
    (loose / "images").mkdir(parents=True)
    (loose / "masks").mkdir(parents=True)
    spec = SplitSpec("bench", "train", classes=ClassTable.from_names([f"c{i}" for i in range(150)], 255),
                     masks=(MaskMember("seg.png", 8, 255),), cls=True, meta=False)
    stats, writer = [], None
    for i in range(count):
        if i % shard_size == 0:
            if writer:
                stats.append(writer.close())
            writer = ShardWriter(split, f"train-{i // shard_size:06d}", spec, strict=True)
        jpg, png = pairs[i % len(pairs)]
        key = f"img{i:06d}"
        writer.write(key, jpg, {"seg.png": np.asarray(Image.open(io.BytesIO(png)))}, cls=i % 150)
        (loose / "images" / f"{key}.jpg").write_bytes(jpg)
        (loose / "masks" / f"{key}.png").write_bytes(png)
    stats.append(writer.close())
    write_index(split, make_index(spec, stats, {"shard_size": shard_size}))
    return split, loose, pairs


def decode_pair(jpg: bytes, png: bytes) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB")), np.asarray(Image.open(io.BytesIO(png)))


def raw_rate(pairs: list[tuple[bytes, bytes]], n: int) -> float:
    """Decode-only samples/s in this process: no I/O, no batching."""
    decode_pair(*pairs[0])
    t0 = time.perf_counter()
    for i in range(n):
        decode_pair(*pairs[i % len(pairs)])
    return n / (time.perf_counter() - t0)


class LooseFiles(Dataset):
    """The plain PyTorch way: one JPEG and one PNG file per sample."""

    def __init__(self, root: Path) -> None:
        self.keys = sorted(p.stem for p in (root / "images").iterdir())
        self.root = root

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict:
        k = self.keys[i]
        jpg, png = (self.root / "images" / f"{k}.jpg").read_bytes(), (self.root / "masks" / f"{k}.png").read_bytes()
        image, mask = decode_pair(jpg, png)
        return {"image": torch.from_numpy(image.copy()), "seg.png": torch.from_numpy(mask.copy()), "__key__": k}


def wds_decode(sample: dict) -> dict:
    image, mask = decode_pair(sample["jpg"], sample["seg.png"])
    return {"image": image, "seg.png": mask, "cls": int(sample["cls"]), "__key__": sample["__key__"]}


def wds_loader(split: Path, batch: int, workers: int) -> DataLoader:
    import webdataset as wds

    urls = [str(p) for p in sorted(split.glob("*.tar"))]
    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(wds_decode)
    ds = ds.to_tuple("image", "seg.png", "cls").batched(batch)
    return DataLoader(ds, batch_size=None, num_workers=workers)


@dataclass
class Run:
    rate: float  # steady-state samples/s (wall clock, from the first batch on)
    cpu_ms: float  # CPU ms per sample, every process and thread of the contender together


def timed(batches, size_of) -> Run:
    """Iterate one full pass. CPU: this process (threads included) plus the loader's worker
    processes, read once they have exited (RUSAGE_CHILDREN counts waited-for children)."""
    kids, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    it = iter(batches)
    total = size_of(next(it))
    t0, n = time.perf_counter(), 0
    for b in it:
        n += size_of(b)
    wall = time.perf_counter() - t0
    del it, b
    gc.collect()
    kids2, me2 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    total += n
    cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in ((kids, kids2), (me, me2)))
    return Run(n / max(wall, 1e-9), cpu * 1e3 / total)


def raw_run(pairs: list[tuple[bytes, bytes]], n: int) -> Run:
    """Decode-only in this process: no I/O, no batching (the ceiling one worker can reach)."""
    decode_pair(*pairs[0])
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        decode_pair(*pairs[i % len(pairs)])
    return Run(n / (time.perf_counter() - t0), (time.process_time() - c0) * 1e3 / n)


def _decode_share(args: tuple[list[tuple[bytes, bytes]], int, int]) -> tuple[float, float]:
    pairs, start, n = args
    decode_pair(*pairs[start % len(pairs)])
    t0 = time.perf_counter()
    for i in range(start, start + n):
        decode_pair(*pairs[i % len(pairs)])
    return t0, time.perf_counter()


def raw_parallel_run(pairs: list[tuple[bytes, bytes]], n: int, w: int) -> Run:
    """Decode-only in ``w`` forked processes at once: what ``w`` decoders can really reach on this
    machine (its cores, its memory bandwidth, its neighbours), without any loader around them."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(w) as pool:
        spans = pool.map(_decode_share, [(pairs, k * n, n) for k in range(w)])
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    return Run(w * n / wall, 0.0)


def transfer_floor_ms(pairs: list[tuple[bytes, bytes]], batch: int, batches: int = 8) -> float:
    """CPU ms per sample to put decoded pixels into fresh shared memory, as every multi-process
    DataLoader must (torch's default_collate does the same); on VMs page faults make this visible."""
    images = [decode_pair(*pairs[i % len(pairs)]) for i in range(batch)]
    t0 = time.process_time()
    for _ in range(batches):
        for col in (0, 1):
            first = images[0][col]
            storage = torch.UntypedStorage._new_shared(first.nbytes * batch)
            out = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (batch, first.nbytes), (first.nbytes, 1)).numpy()
            for i, pair in enumerate(images):
                out[i] = pair[col].reshape(-1)
    return (time.process_time() - t0) * 1e3 / (batch * batches)


def contenders(index, loose: Path, split: Path, pairs, batch: int, w: int, raw_n: int) -> dict[str, Callable[[], Run]]:
    size = lambda b: len(b["__key__"])  # noqa: E731
    return {
        "raw decode": lambda: raw_run(pairs, raw_n),
        f"raw decode x{w} parallel": lambda: raw_parallel_run(pairs, raw_n, w),
        f"stream threads={w}": lambda: timed(loader(index, batch, rank=0, world_size=1, threads=w), size),
        f"stream processes={w}": lambda: timed(loader(index, batch, rank=0, world_size=1, num_workers=w), size),
        "loose files": lambda: timed(DataLoader(LooseFiles(loose), batch_size=batch, shuffle=True, num_workers=w), size),
        "webdataset": lambda: timed(wds_loader(split, batch, w), lambda b: len(b[2])),
    }


def interleaved(runs: dict[str, Callable[[], Run]], rounds: int) -> dict[str, list[Run]]:
    """Every contender once per round, the starting one rotating, so load changes hit all alike."""
    names = list(runs)
    out: dict[str, list[Run]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            out[name].append(runs[name]())
    return out


def report(w: int, results: dict[str, list[Run]], default: str) -> None:
    raw = median(r.rate for r in results["raw decode"])
    print(f"workers={w}: medians of {len(results['raw decode'])} interleaved rounds; ratios to raw decode x {w}, "
          f"to loose files and to webdataset (all per round, then the median)")
    loose, wds = results["loose files"], results["webdataset"]
    parallel = results[f"raw decode x{w} parallel"]
    for name, runs in results.items():
        def per_round(other: list[Run], scale: float = 1.0, runs: list[Run] = runs) -> float:
            return median(a.rate / (b.rate * scale) for a, b in zip(runs, other))

        mark = "  <- default" if name == default else ""
        print(f"  {name:22s} {median(r.rate for r in runs):7.1f} samples/s  {median(r.cpu_ms for r in runs):5.2f} CPU ms/sample"
              f"  | {per_round(results['raw decode'], w):.2f} of raw x {w}  {per_round(loose):.2f}x loose  "
              f"{per_round(wds):.2f}x webdataset  {per_round(parallel):.2f} of {w} parallel decoders{mark}")
    side_by_side = median(r.rate for r in parallel)
    print(f"  (raw decode, one process: {raw:.1f} samples/s; {w} decoders at once: "
          f"{side_by_side:.1f} samples/s, {side_by_side / (w * raw):.2f} of ideal scaling)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--unique", type=int, default=500, help="distinct images (cycled to --count)")
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="keep the data here (default: a temp dir)")
    args = ap.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        t0 = time.perf_counter()
        split, loose, pairs = make_data(root, args.count, args.unique, args.shard_size)
        kb = sum(len(a) + len(b) for a, b in pairs) / len(pairs) / 1e3
        print(f"data: {args.count} samples, {kb:.0f} KB/sample (500x375 JPEG + 8-bit PNG mask), "
              f"{len(list(split.glob('*.tar')))} shards, made in {time.perf_counter() - t0:.0f}s")
        for p in list(split.glob("*.tar")) + list(loose.rglob("*.*")):
            p.read_bytes()  # warm the page cache for everyone
        print(f"shared-memory batch transfer floor: {transfer_floor_ms(pairs, args.batch):.2f} CPU ms/sample")
        index = load_index(split)
        default = type(loader(index, args.batch, rank=0, world_size=1)).__name__
        print(f"loader() default: {default} (2 threads when only datakit transforms run)")
        for w in args.workers:
            runs = contenders(index, loose, split, pairs, args.batch, w, min(args.count, 600))
            results = interleaved(runs, args.rounds)
            report(w, results, f"stream threads={w}" if default == "ThreadLoader" and w == 2 else "")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
