"""Export throughput (mmseg layout) against a bare extraction of the same shards, side by side.

The baseline reads each shard with tarfile and writes every jpg / mask member to a file as is (no
decode, no checks): the least any exporter must do. ``datakit export`` additionally decodes each
mask, re-encodes it as the layout's label file, checks every path, writes atomically and compares
with what is there; it is measured with 1 and 2 workers, and a resumed rerun (everything done)
is measured too. Rounds are interleaved and medians reported, so load on the machine hits all alike.

    python benchmarks/bench_export.py [--images 400] [--shard-size 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import realistic_jpeg  # noqa: E402
from helpers_foundation import ListSource  # noqa: E402

from datakit.build import BuildOptions, build  # noqa: E402
from datakit.export import ExportOptions, export  # noqa: E402


def make_split(root: Path, n: int, shard_size: int) -> Path:
    items = []
    for i in range(n):
        yy, xx = np.mgrid[0:375, 0:500]
        mask = ((yy // 60 + xx // 80 + i) % 4).astype(np.uint8)
        items.append({"key": f"img_{i:06d}", "image": realistic_jpeg(i % 64), "mask": mask})
    build(ListSource(items), root, None, BuildOptions(shard_size=shard_size, workers=1, progress=False))
    return root / "train"


def bare_extract(split: Path, out: Path) -> None:
    for shard in sorted(split.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for info in tar:
                handle = tar.extractfile(info)
                if handle is None:
                    continue
                key, _, ext = info.name.partition(".")
                folder = out / ("images" if ext == "jpg" else "annotations" if ext.endswith("png") else "meta")
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{key}.{ext}").write_bytes(handle.read())


def timed(fn: Callable[..., object], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        split = make_split(root / "ds", args.images, args.shard_size)
        times: dict[str, list[float]] = {"bare extraction": [], "export, 1 worker": [], "export, 2 workers": [],
                                         "export rerun (resume, all done)": []}
        for r in range(args.rounds):
            outs = {name: root / f"out{r}-{i}" for i, name in enumerate(times)}
            times["bare extraction"].append(timed(bare_extract, split, outs["bare extraction"]))
            for workers, name in ((1, "export, 1 worker"), (2, "export, 2 workers")):
                o = ExportOptions(layout="mmseg", workers=workers, progress=False)
                times[name].append(timed(export, str(split), outs[name], o))
            again = ExportOptions(layout="mmseg", workers=1, progress=False)
            times["export rerun (resume, all done)"].append(timed(export, str(split), outs["export, 1 worker"], again))
            for folder in outs.values():
                shutil.rmtree(folder, ignore_errors=True)
        base = statistics.median(times["bare extraction"])
        print(f"{args.images} samples (500x375 JPEG + 8-bit mask) in shards of {args.shard_size}, "
              f"median of {args.rounds} interleaved rounds")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:34s} {args.images / med:8.1f} samples/s   time ratio to bare extraction {med / base:5.2f}")


if __name__ == "__main__":
    main()
