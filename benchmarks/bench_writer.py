"""Shard-writing throughput against a plain file copy of the same JPEGs (what the official
ImageNet-S preparation does), and against a minimal pass-through tar writer with sha256.

    python benchmarks/bench_writer.py [--images 2000] [--repeats 3]
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
from common import best_of, write_tree  # noqa: E402

from datakit.pipeline import BuildOptions, build  # noqa: E402
from datakit.sources.folders import FolderSource  # noqa: E402


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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="dk-bench-"))
    src = scratch / "src"
    paths = write_tree(src, args.images)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{args.images} JPEGs, 500x375, {mb / args.images * 1000:.0f} KB each on average, in {src}")

    def reset(name: str):
        return lambda: shutil.rmtree(scratch / name, ignore_errors=True)

    copy_dst = scratch / "copy"
    t_copy = best_of(args.repeats, lambda: copy_files(paths, src, copy_dst), reset("copy"))
    t_tar = best_of(args.repeats, lambda: minimal_tar(paths, scratch / "minimal.tar"))
    rates = {"file copy (shutil.copy)": args.images / t_copy, "minimal tar + sha256": args.images / t_tar}
    for workers in (1, 2):
        source = FolderSource(str(src), dataset="bench", classes=True)
        opts = BuildOptions(shard_size=500, workers=workers, progress=False)
        t = best_of(args.repeats, lambda: build(source, scratch / "shards", None, opts), reset("shards"))
        rates[f"datakit shards, {workers} worker(s)"] = args.images / t
    base = rates["file copy (shutil.copy)"]
    print(f"{'method':32s} {'images/s':>10s} {'vs copy':>8s}")
    for name, rate in rates.items():
        print(f"{name:32s} {rate:10,.0f} {rate / base:7.2f}x")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
