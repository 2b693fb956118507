"""Device check (issue #15): indexing, retrieval, training and correctness on one GPU, as ratios measured here.

Every figure is a ratio against a baseline measured in the same run:
  index        ``datakit index`` (ViT-L-14-336-quickgelu, fp16) on ~8,000 generated ImageNet-sized JPEGs, in
               images/s, against the same model's pure forward rate on random GPU tensors at the same batch
               size (goal >= 0.90; the steady rate after the first batch is judged, end-to-end is printed too),
               plus the loader alone (decode + resize, no model) to show whether the CPU is the limit.
  retrieval    80 categories x top-500 over 2.7M x 768 fp16 resident on the GPU, in seconds (goal < 1 s); the
               top-k sets must equal the CPU result; the host-to-GPU path (what ``retrieve --device cuda`` does
               from memory-mapped parts) is timed too.
  training     a ViT-B/16 + FCN step with AMP (bf16) at 512 crops from shards through ``datakit.train.loop.train``,
               in samples/s, against the same step on synthetic GPU tensors (goal >= 0.9); and a 1-process
               nccl DDP step whose gradients must equal a plain step's.
  correctness  fp16 GPU embeddings (through ``datakit index``) vs fp32 CPU embeddings of the same images
               (cosine >= 0.999), fp16 GPU text embeddings vs fp32 CPU ones, and ``pytest -m cuda``.

Random weights only; nothing is downloaded. Each section runs in its own process under a time budget
(the whole check stays under 6 minutes), so a crash or an out-of-memory in one still reports the others.
The sections live in ``gpu_clip.py`` (index, retrieval, correctness) and ``gpu_train.py`` (training);
sizes and helpers in ``gpu_common.py``.

On the device machine (bare and offline; its python3 has torch, torchvision, timm, numpy, pillow, pyarrow,
typer and rich), first fetch what it lacks, here, into the git-ignored ``.wheels/``:

    bash benchmarks/gpu_prepare.sh

then give the device tool this command, with carry [".wheels"] and timeout_s 420:

    python3 -m pip install -q --no-index --no-deps --find-links .wheels open_clip_torch ftfy wcwidth regex \\
        tqdm pytest pluggy iniconfig packaging pygments && python3 benchmarks/gpu_check.py --out $OUT

and copy ``$OUT/gpu_check.json`` and ``$OUT/gpu_check.txt`` into ``benchmarks/results/``. On CPU, the same
script runs in a tiny mode (a tiny random CLIP, a few images; ``tests/test_gpu_check.py``):

    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_clip import section_correctness, section_index, section_retrieval  # noqa: E402
from gpu_common import FULL, ROOT, SECTIONS, TINY, Sizes  # noqa: E402
from gpu_train import section_training  # noqa: E402

RUNNERS: dict[str, Callable[[Sizes, str, Path], dict[str, Any]]] = {
    "index": section_index, "retrieval": section_retrieval, "training": section_training,
    "correctness": section_correctness,
}


def environment(device: str) -> dict[str, Any]:
    """Versions, the GPU, CPU count and /dev/shm (DataLoader batches travel through it)."""
    import shutil

    import torch

    env: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__, "cpus": os.cpu_count(),
                           "device": device}
    for name in ("torchvision", "open_clip", "timm", "numpy", "PIL"):
        try:
            env[name] = getattr(__import__(name), "__version__", "?")
        except ImportError:
            env[name] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}"
        env["bf16"] = torch.cuda.is_bf16_supported()
    if Path("/dev/shm").exists():
        env["dev_shm_free_gib"] = round(shutil.disk_usage("/dev/shm").free / 2**30, 1)
    return env


def run_group(names: list[str], args: argparse.Namespace, work: Path, budget: float) -> dict[str, Any]:
    """Sections in one child process under ``budget`` seconds: {name: its JSON, or what went wrong}."""
    result = work / f"{'+'.join(names)}.json"
    cmd = [sys.executable, __file__, "--section", ",".join(names), "--device", args.device, "--work", str(work),
           "--result", str(result)] + (["--tiny"] if args.tiny else [])
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget)
        failure = f"exit code {proc.returncode}" if proc.returncode else ""
        stderr = proc.stderr
    except subprocess.TimeoutExpired as err:
        failure = f"timed out after {budget:.0f}s"
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
    seconds = round(time.perf_counter() - t, 1)
    done = json.loads(result.read_text()) if result.exists() else {}  # a child writes after each section
    out = {"environment": done.get("environment")}
    for name in names:
        if name in done:
            out[name] = done[name]
        else:
            out[name] = {"ok": False, "error": failure or "no result", "stderr_tail": stderr[-3000:]}
    if len(names) == 1:
        out[names[0]]["seconds"] = seconds
    return out


def run_child(names: list[str], sizes: Sizes, device: str, work: Path, result: Path) -> None:
    """In the child: the environment, then each section, the JSON rewritten after each (a later crash keeps them)."""
    done: dict[str, Any] = {"environment": environment(device)}
    for name in names:
        t = time.perf_counter()
        done[name] = {**RUNNERS[name](sizes, device, work), "seconds": 0.0}
        done[name]["seconds"] = round(time.perf_counter() - t, 1)
        result.write_text(json.dumps(done, indent=1))


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The figures, one line each."""
    lines = [f"environment: {json.dumps(report.get('environment'))}"]
    r = report["sections"]
    i, q, t, c = (r.get(n, {}) for n in SECTIONS)
    if "ratio" in i:
        lines.append(f"index: {i['images']} JPEGs {i['image_size'][0]}x{i['image_size'][1]}, {i['model']} {i['precision']} "
                     f"batch {i['batch']}: forward {i['forward_rate']} img/s, datakit index {i['index_steady_rate']} img/s "
                     f"steady ({i['index_rate']} end-to-end), loader alone {i['loader_rate']} img/s -> ratio {i['ratio']} "
                     f"(end-to-end {i['ratio_end_to_end']}; goal >= 0.90) {'OK' if i['ok'] else 'MISSED'}; --decode device "
                     f"{i.get('device_decode_steady_rate', i.get('device_decode'))} img/s -> ratio "
                     f"{i.get('device_decode_ratio', '-')}")
    if "resident_seconds" in q:
        lines.append(f"retrieval: {q['categories']} x top-{q['k']} over {q['rows']:,} x {q['dim']} fp16 on {q['device']}: "
                     f"{q['resident_seconds']}s resident (cold {q['resident_cold_seconds']}s), CPU {q['cpu_seconds']}s, "
                     f"host->GPU {q.get('host_to_gpu_seconds', '-')}s; sets equal to CPU: {q['sets_equal']} "
                     f"({q['queries_with_equal_sets']}/{q['queries']}) {'OK' if q['ok'] else 'MISSED'}")
    if "ratio" in t:
        lines.append(f"training: {t['backbone']} + FCN, crop {t['crop']}, batch {t['batch']}, AMP {t['amp']}: shards "
                     f"{t['shards_rate']} samples/s vs synthetic {t['synthetic_rate']} -> ratio {t['ratio']} (goal >= 0.9) "
                     f"{'OK' if t['ok'] else 'MISSED'}; DDP ({t['ddp']['backend']}) grad diff "
                     f"{t['ddp']['max_relative_grad_difference']:.2e} {'OK' if t['ddp']['ok'] else 'FAILED'}")
    if "images" in c:
        im = c["images"]
        dd = im["device_decode"].get("min_cosine", im["device_decode"].get("device_decode"))
        lines.append(f"correctness: image cosine min {im['min_cosine']:.6f} (centred {im['min_centred_cosine']:.4f}; "
                     f"--decode device {dd}), text cosine min {c['text']['min_cosine']:.6f}; "
                     f"pytest -m cuda: {c['pytest_cuda'].get('summary') or c['pytest_cuda'].get('skipped')} "
                     f"{'OK' if c['ok'] else 'MISSED'}")
    for name in SECTIONS:
        if "error" in r.get(name, {}):
            lines.append(f"{name}: FAILED ({r[name]['error']})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (with --tiny: the test suite's run)")
    ap.add_argument("--tiny", action="store_true", help="tiny model and sizes (a CPU smoke run)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for gpu_check.json and .txt")
    ap.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    ap.add_argument("--budget", type=float, default=330.0, help="seconds for all sections together")
    ap.add_argument("--section", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sizes = TINY if args.tiny else FULL
    if args.section:  # a child
        run_child(args.section.split(","), sizes, args.device, Path(args.work), Path(args.result))
        return
    t0 = time.perf_counter()
    chosen = [s for s in (args.only.split(",") if args.only else SECTIONS) if s]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    # on the GPU each section gets its own process (isolation, a budget each); the tiny run pays one start-up
    groups = [[n] for n in chosen] if not args.tiny else [chosen]
    report: dict[str, Any] = {"mode": "tiny" if args.tiny else "full", "sizes": asdict(sizes), "sections": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for names in groups:
            left = args.budget - (time.perf_counter() - t0)
            budget = max(10.0, min(float(sum(sizes.budgets[n] for n in names)), left))
            got = run_group(names, args, Path(tmp), budget)
            env = got.pop("environment", None)
            if env and not report.get("environment"):
                report["environment"] = env
            for name in names:
                report["sections"][name] = got[name]
                print(f"[{time.perf_counter() - t0:6.1f}s] {name}: {json.dumps(got[name])}", flush=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = summary_lines(report) + [f"total {report['seconds']}s"]
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_check.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
