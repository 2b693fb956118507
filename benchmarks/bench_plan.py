"""Benchmark: planning a build of an ImageNet-style tree against a bare parallel walk of the same tree.

Planning is everything the driver does before a shard is written: list and stat every file (on
threads), make typed records, give them unique keys and the seeded order, cut shards and fingerprint
them. The baseline is the least any planner must do: a ``scandir`` + ``stat`` of every file on 16
threads. A second pair times ``--resume`` reading the done markers: ``PartStore.scan`` on threads
against reading them one after another. Rounds are interleaved; medians are reported. Peak driver
memory is measured with tracemalloc over one planning pass and given per record, with the projection
to ImageNet's 1,281,167 images (only one order window of records is resident at a time).

    python benchmarks/bench_plan.py --classes 200 --per-class 500 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved  # noqa: E402
from datakit.io import open_output  # noqa: E402
from datakit.jobs.parts import PartStore, sealed_bytes, unseal  # noqa: E402
from datakit.pipeline.build import BuildOptions, context_bytes, stamped  # noqa: E402
from datakit.pipeline.fingerprint import Roots  # noqa: E402
from datakit.pipeline.plan import DEFAULT_WINDOW, plan_tasks  # noqa: E402
from datakit.sources import imagefolder  # noqa: E402

IMAGENET_TRAIN = 1_281_167


def make_tree(root: Path, classes: int, per_class: int) -> None:
    """Class folders of small files (stat cost does not depend on size)."""
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"n{c:08d}_{i}.JPEG").write_bytes(b"\xff\xd8" + bytes(64 + i % 97))


def bare_walk(root: Path) -> int:
    def one(folder: str) -> int:
        return sum(1 for e in os.scandir(folder) if e.stat().st_size >= 0)

    folders = sorted(e.path for e in os.scandir(root) if e.is_dir())
    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(one, folders))


def plan(root: Path, resume: bool = False) -> int:
    """What the driver does before writing: list, key, order and cut; with ``resume`` also fingerprint
    every shard (a fresh build leaves that to the workers, which put it in the done markers)."""
    source = imagefolder.make_source({"src": str(root), "dataset": "bench"})
    opts = BuildOptions()
    tasks = plan_tasks("train", source.records("train").records, opts.plan())
    if resume:
        tasks = stamped(tasks, Roots.of(source.roots()), context_bytes(source.spec("train"), opts), "stat")
    return sum(t.size for t in tasks)


def markers(out: Path, n: int) -> None:
    store = PartStore(open_output(str(out)), "train", ".stats.json")
    for i in range(n):
        marker = sealed_bytes({"fingerprints": {"stat": str(i)}, "files": {}})
        store.output.write_bytes("train", f"train-{i:06d}.stats.json", marker)


def scan_threads(out: Path, n: int) -> None:
    store = PartStore(open_output(str(out)), "train", ".stats.json")
    assert sum(1 for _, m in store.scan(f"train-{i:06d}" for i in range(n)) if m) == n


def scan_serial(out: Path, n: int) -> None:
    folder = out / "train"
    assert sum(1 for i in range(n) if unseal((folder / f"train-{i:06d}.stats.json").read_bytes())) == n


def peak_per_record(root: Path, records: int) -> float:
    tracemalloc.start()
    plan(root)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--markers", type=int, default=1300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    try:
        root = scratch / "imagenet" / "train"
        make_tree(root, args.classes, args.per_class)
        markers(scratch / "out", args.markers)
        n = args.classes * args.per_class
        assert plan(root) == bare_walk(root) == n
        times = interleaved({
            "bare parallel walk (scandir+stat, 16 threads)": lambda: bare_walk(root),
            "datakit plan, fresh build (list, keys, order, shards)": lambda: plan(root),
            "datakit plan for --resume (+ fingerprints)": lambda: plan(root, resume=True),
            "done markers read one by one": lambda: scan_serial(scratch / "out", args.markers),
            "done markers, PartStore.scan (local: a plain loop)": lambda: scan_threads(scratch / "out", args.markers),
        }, args.rounds)
        med = {k: statistics.median(v) for k, v in times.items()}
        names = list(med)
        print(f"{n:,} files in {args.classes} class folders; {args.markers} done markers; {args.rounds} interleaved rounds")
        print(f"{'':58} {'median s':>9} {'files/s':>12}")
        for name in names[:3]:
            print(f"{name:58} {med[name]:>9.3f} {n / med[name]:>12,.0f}")
        fresh, resume = med[names[0]] / med[names[1]], med[names[0]] / med[names[2]]
        print(f"planning speed vs bare walk: fresh {fresh:.2f}x, resume {resume:.2f}x")
        for name in names[3:]:
            print(f"{name:58} {med[name]:>9.3f}")
        print(f"PartStore.scan vs one by one: {med[names[3]] / med[names[4]]:.2f}x")
        per = peak_per_record(root, n)
        print(f"peak driver memory: {per:,.0f} bytes per resident record ({n:,} records, all in one order window here); "
              f"ImageNet's {IMAGENET_TRAIN:,} keep one window of {DEFAULT_WINDOW:,} resident: "
              f"{per * DEFAULT_WINDOW / IMAGENET_TRAIN:,.0f} bytes a record")
        print(json.dumps({"files": n, "medians_s": med}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
