"""The same conversion with the local executor and with a local Ray instance on this machine.

    python benchmarks/bench_ray.py [--images 4000] [--workers 2]

Ray's rate is given twice: with ``ray.init`` counted (a cold start) and on an already running
Ray (the cluster case, where the driver attaches to a live cluster).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_tree  # noqa: E402

from datakit.pipeline import BuildOptions, build  # noqa: E402
from datakit.sources.folders import FolderSource  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--settle", type=float, default=15.0, help="seconds to let a fresh local Ray settle before timing")
    args = ap.parse_args()
    import ray

    scratch = Path(tempfile.mkdtemp(prefix="dk-ray-bench-"))
    write_tree(scratch / "src", args.images)
    source = FolderSource(str(scratch / "src"), dataset="bench", classes=True)

    def run(executor: str, name: str) -> float:
        opts = BuildOptions(shard_size=args.shard_size, workers=args.workers, executor=executor, progress=False)
        shutil.rmtree(scratch / name, ignore_errors=True)
        return timed(lambda: build(source, scratch / name, None, opts))

    t_local = min(run("local", "local") for _ in range(2))
    t_cold = run("ray", "ray-cold")
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    run("ray", "ray-warmup")
    time.sleep(args.settle)  # Ray's agents spend their first seconds starting up; a running cluster is past that
    t_warm = min(run("ray", "ray-warm") for _ in range(2))
    ray.shutdown()
    same = all((scratch / "local" / p.relative_to(scratch / "ray-warm")).read_bytes() == p.read_bytes()
               for p in (scratch / "ray-warm").rglob("*.tar"))
    n = args.images
    print(f"{n} JPEGs 500x375, {args.workers} workers, shards of {args.shard_size}")
    print(f"{'executor':28s} {'images/s':>10s} {'vs local':>9s}")
    for name, t in [("local process pool", t_local), ("ray, running cluster", t_warm), ("ray, incl. ray.init", t_cold)]:
        print(f"{name:28s} {n / t:10,.0f} {t_local / t:8.2f}x")
    print(f"overhead of ray on a running cluster: {100 * (t_warm / t_local - 1):.1f}%; shards identical: {same}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
