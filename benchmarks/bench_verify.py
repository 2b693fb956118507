"""Benchmark: ``verify`` against a minimal reader of the same split (sha256 of each shard + tarfile +
a full PIL decode of every image and mask), and verify's memory on a larger split.

verify does more than the minimal reader (member names and types, the member set, mask ids against
the class table, the mask encoding, every file of the folder, markers and index digests); the goal
is that it still reads at least as fast. Rounds are interleaved; each round's ratio is taken and the
median reported. Peak memory (tracemalloc) is given for two split sizes: it must not grow with them.

    python benchmarks/bench_verify.py --samples 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import statistics
import sys
import tarfile
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved, realistic_jpeg  # noqa: E402
from datakit.pipeline import BuildOptions, build  # noqa: E402
from datakit.shards.index import load_index  # noqa: E402
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec  # noqa: E402
from datakit.shards.verify import verify  # noqa: E402
from datakit.sources.base import Listing, Record, Sample  # noqa: E402


class Generated:
    """n photo-like 500x375 JPEGs with 8-bit masks of 21 classes (VOC-like)."""

    name = "bench"

    def __init__(self, n: int) -> None:
        self.n = n
        self.jpegs = [realistic_jpeg(i) for i in range(64)]

    def splits(self) -> list[str]:
        return ["train"]

    def spec(self, split: str) -> SplitSpec:
        return SplitSpec("bench", split, ClassTable.from_names([f"c{i}" for i in range(21)], 255),
                         masks=(MaskMember("seg.png", 8, 255),))

    def records(self, split: str) -> Listing:
        return Listing([Record(f"s{i:07d}", i, 90_000) for i in range(self.n)])

    def load(self, record: Record) -> Sample:
        i = int(record.payload)
        mask = ((np.arange(375 * 500).reshape(375, 500) // 9000 + i) % 21).astype(np.uint8)
        return Sample(record.key, self.jpegs[i % 64], {"seg.png": mask}, meta={"i": i})


def minimal_reader(split: Path) -> int:
    """What any careful reader does: hash each shard, iterate it with tarfile, decode every image."""
    n = 0
    for shard in sorted(split.glob("*.tar")):
        h = hashlib.sha256()
        with open(shard, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        with tarfile.open(shard) as tar:
            for info in tar:
                data = tar.extractfile(info).read()
                if info.name.endswith((".jpg", ".png")):
                    Image.open(io.BytesIO(data)).load()
                    n += info.name.endswith(".jpg")
    return n


def peak_mb(split: Path) -> float:
    tracemalloc.start()
    assert verify(str(split))[0].ok
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        opts = BuildOptions(shard_size=500, workers=2, progress=False)
        build(Generated(args.samples), scratch / "small", None, opts)
        build(Generated(4 * args.samples), scratch / "large", None, opts)
        split = scratch / "small" / "train"
        assert minimal_reader(split) == args.samples and verify(str(split))[0].ok
        times = interleaved({
            "minimal reader (sha256 + tarfile + PIL)": lambda: minimal_reader(split),
            "datakit verify, 1 worker": lambda: verify(str(split), workers=1),
        }, args.rounds)
        names = list(times)
        print(f"{args.samples:,} samples (500x375 JPEG + 8-bit mask) in {len(list(split.glob('*.tar')))} shards; "
              f"{args.rounds} interleaved rounds, medians")
        for name in names:
            print(f"{name:42} {args.samples / statistics.median(times[name]):>10,.0f} samples/s")
        ratio = statistics.median(m / v for m, v in zip(times[names[0]], times[names[1]]))
        print(f"verify vs minimal reader: {ratio:.2f}x")
        small, large = peak_mb(split), peak_mb(scratch / "large" / "train")
        print(f"verify peak memory: {small:.1f} MB on {args.samples:,} samples, {large:.1f} MB on {4 * args.samples:,}")
        size = load_index(split).total_bytes
        print(f"(shards hold {size / 1e6:,.0f} MB)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
