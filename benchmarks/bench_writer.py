"""Shard-writing throughput against a plain file copy of the same JPEGs (what the official
ImageNet-S preparation does), and against a minimal pass-through tar writer with sha256.

Contenders run in interleaved rounds (copy, minimal tar, datakit 1 worker, datakit 2 workers, copy,
...) so load changes on a shared machine hit all of them; the table gives medians. The datakit
build is the whole thing a user runs: listing, planning, fingerprints, shards, done markers
(with the inputs' content hashes), index and card.

    python benchmarks/bench_writer.py [--images 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import statistics  # noqa: E402

from common import interleaved, write_tree  # noqa: E402

from datakit.pipeline import BuildOptions, build  # noqa: E402
from datakit.sources.imagefolder import folder_source  # noqa: E402


def copy_files(paths: list[Path], src: Path, dst: Path) -> None:
    for p in paths:
        target = dst / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, target)


def minimal_tar(paths: list[Path], out: Path) -> None:
    h = hashlib.sha256()
    with open(out, "wb") as f:
        for p in paths:
            data = p.read_bytes()
            info = tarfile.TarInfo(p.stem + ".jpg")
            info.size = len(data)
            block = info.tobuf(format=tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)
            h.update(block)
            f.write(block)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="dk-bench-"))
    src = scratch / "src"
    paths = write_tree(src, args.images)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{args.images} JPEGs, 500x375, {mb / args.images * 1000:.0f} KB each on average, in {src}")

    def copy() -> None:
        shutil.rmtree(scratch / "copy", ignore_errors=True)
        copy_files(paths, src, scratch / "copy")

    def shards(workers: int):
        def run() -> None:
            shutil.rmtree(scratch / "shards", ignore_errors=True)
            build(folder_source(src, dataset="bench", classes=True), scratch / "shards", None,
                  BuildOptions(shard_size=500, workers=workers, progress=False))
        return run

    times = interleaved({
        "file copy (shutil.copy)": copy,
        "minimal tar + sha256": lambda: minimal_tar(paths, scratch / "minimal.tar"),
        "datakit shards, 1 worker": shards(1),
        "datakit shards, 2 workers": shards(2),
    }, args.rounds)
    rates = {name: args.images / statistics.median(ts) for name, ts in times.items()}
    copy_times = times["file copy (shutil.copy)"]
    print(f"{'method':32s} {'images/s':>10s} {'vs copy':>8s}   (medians of {args.rounds} interleaved rounds; the ratio is the")
    print(f"{'':32s} {'':>10s} {'':>8s}    median of each round's own ratio, so a slow round slows both sides)")
    for name, rate in rates.items():
        ratio = statistics.median(c / t for c, t in zip(copy_times, times[name]))
        print(f"{name:32s} {rate:10,.0f} {ratio:7.2f}x")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
