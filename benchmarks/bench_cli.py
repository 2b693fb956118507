"""Benchmark: start-up of ``datakit --help`` and ``datakit verify --help`` against ``python -c "import typer"``.

Goal: ``datakit --help`` within 1.5x of a bare typer import. The three commands run in
interleaved rounds (A, B, C, A, B, C, ...) so load changes on a shared machine hit all of them
alike; the table shows medians and the ratio to the typer import.

    python benchmarks/bench_cli.py --rounds 15
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


# as users run it: bytecode is cached (some sandboxes set PYTHONDONTWRITEBYTECODE, which makes every
# start-up recompile every module and measures the compiler instead)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    exe = shutil.which("datakit") or str(Path(sys.executable).parent / "datakit")
    contenders = {
        'python -c "import typer"': [sys.executable, "-c", "import typer"],
        "datakit --help": [exe, "--help"],
        "datakit verify --help": [exe, "verify", "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for cmd in contenders.values():  # warm the file and bytecode caches once
        timed(cmd)
    for _ in range(args.rounds):
        for name, cmd in contenders.items():
            times[name].append(timed(cmd))
    base = statistics.median(times['python -c "import typer"'])
    print(f"{'command':<28} {'median s':>9} {'vs import typer':>16}   ({args.rounds} interleaved rounds)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<28} {med:>9.3f} {med / base:>15.2f}x")


if __name__ == "__main__":
    main()
