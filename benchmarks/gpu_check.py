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
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from datakit.sources.demo import DemoSource, draw_shapes  # noqa: E402

SECTIONS = ("index", "retrieval", "training", "correctness")


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the full GPU check and the tiny CPU run."""

    model: str = "ViT-L-14-336-quickgelu"
    images: int = 8000
    image_size: tuple[int, int] = (500, 375)
    batch: int = 256
    forward_batches: int = 8
    rows: int = 2_700_000
    dim: int = 768
    categories: int = 80
    k: int = 500
    backbone: str = "vit_base_patch16_224"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    crop: int = 512
    train_batch: int = 16
    iterations: int = 40
    train_samples: int = 256
    train_image: tuple[int, int] = (640, 512)  # draw_shapes needs both sides > 80
    head_channels: int = 256
    check_images: int = 16
    budgets: dict[str, int] = field(default_factory=lambda: {"index": 130, "retrieval": 60, "training": 90,
                                                              "correctness": 80})


FULL = Sizes()
TINY = Sizes(model="datakit-tiny", images=24, image_size=(96, 72), batch=8, forward_batches=3, rows=20_000, dim=32,
             categories=8, k=50, backbone="vit_tiny_patch16_224", backbone_options={"depth": 2}, crop=64, train_batch=2,
             iterations=6, train_samples=8, train_image=(128, 96), head_channels=16, check_images=4,
             budgets={s: 150 for s in SECTIONS})


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """(seconds, result) of one call, the device synchronised on both sides."""
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t, out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _model_spec(s: Sizes) -> Any:
    from datakit.clip.model import ModelSpec, register_tiny_model

    if s.model == "datakit-tiny":
        register_tiny_model()
    return ModelSpec(s.model, None)


def _precision(device: str) -> str:
    return "fp16" if device.startswith("cuda") else "fp32"


# ---------------------------------------------------------------------------------------------- index


def _write_jpeg(job: tuple[Path, int, int, int]) -> None:
    from common import realistic_jpeg

    path, seed, w, h = job
    path.write_bytes(realistic_jpeg(seed, w, h))


def make_jpegs(folder: Path, n: int, size: tuple[int, int]) -> None:
    """n photo-like JPEGs (256 distinct pictures, repeated under distinct names), written in parallel."""
    import multiprocessing as mp

    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"img{i:06d}.jpg", i % 256, *size) for i in range(n) if not (folder / f"img{i:06d}.jpg").exists()]
    with mp.get_context("fork").Pool(max(1, min(16, os.cpu_count() or 1))) as pool:
        pool.map(_write_jpeg, jobs, chunksize=16)


def forward_rate(loaded: Any, batch: int, batches: int) -> float:
    """images/s of ``encode_image`` alone on random tensors already on the device (after 2 warm-up batches)."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(loaded.precision, torch.float32)
    size = loaded.identity["preprocess"]["size"]
    x = torch.randn(batch, 3, size[0], size[1], device=loaded.device).to(dtype)
    with torch.inference_mode():
        for _ in range(2):
            loaded.model.encode_image(x)
        sec, _ = _timed(lambda: [loaded.model.encode_image(x) for _ in range(batches)], loaded.device)
    return batch * batches / sec


def loader_rate(folder: Path, transform: Any, batch: int, workers: int) -> float:
    """images/s of the index's loader alone (decode, resize, crop, uint8 batches; no model)."""
    from datakit.clip.images import parse_input, plan_parts
    from datakit.clip.loader import PilDecoder, make_loader, split_transform

    tf, _ = split_transform(transform)
    tasks = plan_parts([parse_input(str(folder))], 10_000)
    t = time.perf_counter()
    n = sum(len(item["keys"]) for item in make_loader(tasks, PilDecoder(tf), batch, workers, pin=False))
    return n / (time.perf_counter() - t)


def section_index(s: Sizes, device: str, work: Path) -> dict[str, Any]:
    import torch

    from datakit.clip.embed import IndexOptions, build_index
    from datakit.clip.images import parse_input
    from datakit.clip.model import load_model

    folder = work / "index-images"
    t = time.perf_counter()
    make_jpegs(folder, s.images, s.image_size)
    made = time.perf_counter() - t
    spec, prec = _model_spec(s), _precision(device)
    workers = max(1, min(16, (os.cpu_count() or 2) - 1))
    loaded = load_model(spec, device, prec)
    fwd = forward_rate(loaded, s.batch, s.forward_batches)
    alone = loader_rate(folder, loaded.transform, s.batch, workers)
    del loaded
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    opts = IndexOptions(spec, device, prec, batch_size=s.batch, workers=workers, overwrite=True, progress=False)
    rep = build_index([parse_input(str(folder))], work / "index", opts, notify=lambda m: None)
    if time.perf_counter() - t < 0.5 * s.budgets["index"]:  # the optional decoder only when time allows
        dd = device_decode_rate(folder, work / "index-device-decode", replace(opts, decode="device"), fwd)
    else:
        dd = {"device_decode": "skipped: not enough time left"}
    return {"images": rep.images, "image_size": list(s.image_size), "model": s.model, "precision": prec,
            "batch": s.batch, "workers": workers, "seconds_making_images": round(made, 1),
            "forward_rate": round(fwd, 1), "loader_rate": round(alone, 1), "index_rate": round(rep.rate, 1),
            "index_steady_rate": round(rep.steady_rate, 1), "startup_seconds": rep.startup_seconds,
            "ratio_end_to_end": round(rep.rate / fwd, 3), "ratio": round(rep.steady_rate / fwd, 3), "goal": 0.90,
            "ok": rep.steady_rate / fwd >= 0.90, "failed": rep.failed, **dd}


def device_decode_rate(folder: Path, out: Path, opts: Any, fwd: float) -> dict[str, Any]:
    """``datakit index --decode device`` on the same images (JPEGs decoded, resized, cropped on the device)."""
    from datakit.clip.embed import build_index
    from datakit.clip.images import parse_input
    from datakit.errors import InputError

    try:
        rep = build_index([parse_input(str(folder))], out, opts, notify=lambda m: None)
    except InputError as err:
        return {"device_decode": f"unavailable: {err}"}
    return {"device_decode_steady_rate": round(rep.steady_rate, 1), "device_decode_rate": round(rep.rate, 1),
            "device_decode_ratio": round(rep.steady_rate / fwd, 3), "device_decode_failed": rep.failed}


# ------------------------------------------------------------------------------------------ retrieval


def make_rows(s: Sizes, device: str, part: int = 10_000) -> tuple[list[Any], Any]:
    """Unit float16 rows made on the device in index-sized parts, and unit float32 queries near a few rows."""
    import torch

    gen = torch.Generator(device=device).manual_seed(0)
    parts = []
    for start in range(0, s.rows, part):
        x = torch.randn(min(part, s.rows - start), s.dim, device=device, generator=gen)
        parts.append((x / x.norm(dim=1, keepdim=True)).half())
    q = torch.randn(s.categories, s.dim, device=device, generator=gen)
    q = q / q.norm(dim=1, keepdim=True)
    pick = torch.randint(0, s.rows, (s.categories,), device=device, generator=gen)
    near = torch.stack([parts[int(i) // part][int(i) % part].float() for i in pick.tolist()])
    q = 0.6 * q + 0.4 * near  # categories stand out above the crowd, as real prompts do
    return parts, (q / q.norm(dim=1, keepdim=True)).cpu().numpy()


def _boundary_swap(a: Any, b: Any, c: int, tol: float = 1e-5) -> bool:
    """True when the rows only one of two top-k lists holds all score within ``tol`` of the k-th score
    (near-equal scores that summation order may swap at the boundary; anything else is a real difference)."""
    kth = min(float(a.scores[c, -1]), float(b.scores[c, -1]))
    for x, y in ((a, b), (b, a)):
        only = ~np.isin(x.rows[c], y.rows[c])
        if (abs(x.scores[c][only] - kth) >= tol).any():
            return False
    return True


def compare_topk(a: Any, b: Any) -> dict[str, Any]:
    """Set equality per query; where sets differ, whether only near-equal scores at the k-th place swapped."""
    differ = [c for c in range(a.rows.shape[0]) if set(a.rows[c].tolist()) != set(b.rows[c].tolist())]
    score_gap = float(np.abs(a.scores - b.scores).max()) if a.scores.size else 0.0
    return {"queries_with_equal_sets": a.rows.shape[0] - len(differ), "queries": int(a.rows.shape[0]),
            "sets_equal": not differ, "differences_only_at_the_kth_score": all(_boundary_swap(a, b, c) for c in differ),
            "max_score_difference": score_gap}


def section_retrieval(s: Sizes, device: str, work: Path) -> dict[str, Any]:
    from datakit.clip.topk import SearchOptions, exact_topk

    parts, q = make_rows(s, device)
    cold, _ = _timed(lambda: exact_topk(q, parts, s.k), device)
    runs = [_timed(lambda: exact_topk(q, parts, s.k), device) for _ in range(3)]
    resident = _median([r[0] for r in runs])
    top = runs[0][1]
    host = [p.cpu().numpy() for p in parts]
    backend = "torch" if device.startswith("cuda") else "numpy"  # tiny CPU mode: the other code path
    cpu_sec, cpu = _timed(lambda: exact_topk(q, host, s.k, SearchOptions(backend=backend, device="cpu")), "cpu")
    out = {"rows": s.rows, "dim": s.dim, "categories": s.categories, "k": s.k, "device": device,
           "resident_seconds": round(resident, 4), "resident_cold_seconds": round(cold, 4),
           "cpu_seconds": round(cpu_sec, 3), "cpu_backend": backend, "goal_seconds": 1.0, **compare_topk(top, cpu)}
    if device.startswith("cuda"):
        sec, _ = _timed(lambda: exact_topk(q, host, s.k, SearchOptions(backend="torch", device=device)), device)
        out["host_to_gpu_seconds"] = round(sec, 3)
    out["speedup_vs_cpu"] = round(cpu_sec / resident, 1)
    out["ok"] = bool(out["sets_equal"] and resident < 1.0)
    return out


# ------------------------------------------------------------------------------------------- training


@dataclass
class Shapes(DemoSource):
    """The demo's shape images (only its ``synthetic`` split) at another size."""

    width: int = 640
    height: int = 512

    def splits(self) -> list[str]:
        return ["synthetic"]

    def load(self, record: Any) -> Any:
        from datakit.sample import Sample

        img, label = draw_shapes(int(record.data["seed"]), self.width, self.height)
        return Sample(record.key, img, {"seg.png": label}, meta={"seed": record.data["seed"]}, origin=record.key)


def make_shards(s: Sizes, out: Path) -> Path:
    """A split of shape images with pixel labels at ``train_image`` size, written by datakit's build."""
    from datakit.build import BuildOptions, build

    if not (out / "synthetic" / "index.json").exists():
        workers = max(1, min(16, os.cpu_count() or 1))
        source = Shapes(s.train_samples, width=s.train_image[0], height=s.train_image[1])
        build(source, out, ["synthetic"], BuildOptions(shard_size=32, workers=workers, progress=False))
    return out / "synthetic"


def steady_rate(log: Path, warm: int) -> float:
    """samples/s between the first logged step past ``warm`` and the last (the log's rates are cumulative)."""
    recs = [json.loads(line) for line in log.read_text().splitlines() if '"samples_per_s"' in line]
    a = next((r for r in recs if r["step"] > warm), recs[0])
    b = recs[-1]
    if b["step"] == a["step"]:
        return float(b["samples_per_s"])
    # rate = step * batch / elapsed, so step / rate = elapsed / batch, and this is (steps * batch) / elapsed
    ta, tb = a["step"] / a["samples_per_s"], b["step"] / b["samples_per_s"]
    return (b["step"] - a["step"]) / (tb - ta)


def train_config(s: Sizes, data: Path, out: Path, device: str) -> Any:
    from datakit.train.config import parse_config

    workers = 0 if not device.startswith("cuda") else max(1, min(12, (os.cpu_count() or 2) - 2))
    return parse_config({
        "data": [{"path": str(data)}],
        "model": {"backbone": s.backbone, "head": "fcn", "head_channels": s.head_channels,
                  "options": dict(s.backbone_options)},
        "optim": {"lr": 1e-4, "schedule": "constant"},
        "train": {"out": str(out), "iterations": s.iterations, "batch_size": s.train_batch, "crop": s.crop,
                  "workers": workers, "log_every": 1, "amp": True, "device": device},
    })


def synthetic_rate(cfg: Any, classes: int, device: str, steps: int) -> float:
    """samples/s of the trainer's step (same model, optimizer, loss, autocast) on tensors already on the device."""
    import torch

    from datakit.train.loop import make_optimizer
    from datakit.train.losses import pixel_ce
    from datakit.train.model import build_model

    dev = torch.device(device)
    model = build_model(cfg.model, classes).to(dev).train()
    opt = make_optimizer(cfg, model)
    b, c = cfg.train.batch_size, cfg.train.crop
    images = torch.randint(0, 256, (b, 3, c, c), dtype=torch.uint8, device=dev)
    target = torch.randint(0, classes, (b, c, c), device=dev)
    amp = dev.type == "cuda"

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = pixel_ce(model(images).float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sec, _ = _timed(lambda: [step() for _ in range(steps)], device)
    return b * steps / sec


def ddp_step(cfg: Any, classes: int, device: str) -> dict[str, Any]:
    """One DDP training step in a 1-process group (nccl on GPU, gloo on CPU); its gradients must equal a plain step's."""
    import copy
    import socket

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from datakit.train.losses import pixel_ce
    from datakit.train.model import build_model

    backend = "nccl" if device.startswith("cuda") else "gloo"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        dev = torch.device(device)
        torch.manual_seed(0)
        plain = build_model(cfg.model, classes).to(dev).train()
        wrapped = DistributedDataParallel(copy.deepcopy(plain), device_ids=[dev.index or 0] if dev.type == "cuda" else None)
        c = min(cfg.train.crop, 256)
        images = torch.randint(0, 256, (2, 3, c, c), dtype=torch.uint8, device=dev)
        target = torch.randint(0, classes, (2, c, c), device=dev)
        losses = []
        for net in (plain, wrapped):
            torch.manual_seed(1)  # same dropout masks
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = pixel_ce(net(images).float(), target)
            loss.backward()
            losses.append(float(loss.detach()))
        diff = max(float((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-12))
                   for p, q in zip(wrapped.module.parameters(), plain.parameters()) if q.grad is not None)
    finally:
        dist.destroy_process_group()
    return {"backend": backend, "loss": round(losses[1], 5), "loss_plain": round(losses[0], 5),
            "max_relative_grad_difference": diff, "ok": diff < 1e-3 and all(math.isfinite(v) for v in losses)}


def section_training(s: Sizes, device: str, work: Path) -> dict[str, Any]:
    from datakit.train.loop import train

    t = time.perf_counter()
    data = make_shards(s, work / "train-shards")
    made = time.perf_counter() - t
    cfg = train_config(s, data, work / "run", device)
    result = train(cfg, log=lambda m: None)
    shards = steady_rate(Path(cfg.train.out) / "log.jsonl", min(5, s.iterations // 2))
    synthetic = synthetic_rate(cfg, 4, device, max(3, s.iterations // 2))
    return {"backbone": s.backbone, "crop": s.crop, "batch": s.train_batch, "iterations": result.iterations,
            "amp": "bf16" if device.startswith("cuda") else "off (CPU)", "loader_workers": cfg.train.workers,
            "seconds_making_shards": round(made, 1), "shards_rate": round(shards, 2),
            "synthetic_rate": round(synthetic, 2), "ratio": round(shards / synthetic, 3), "goal": 0.9,
            "ok": shards / synthetic >= 0.9, "final_loss": round(result.losses[-1], 4),
            "ddp": ddp_step(cfg, 4, device)}


# ---------------------------------------------------------------------------------------- correctness


def _cosines(a: Any, b: Any) -> dict[str, float]:
    """Row cosines of two embedding sets, raw and after removing the mean embedding (random towers map every
    input close to one direction; the centred cosine shows whether the image-specific part agrees)."""

    def unit(x: Any) -> Any:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, b = a.astype(np.float64), b.astype(np.float64)
    mean = b.mean(axis=0, keepdims=True)
    raw = (unit(a) * unit(b)).sum(1)
    centred = (unit(a - mean) * unit(b - mean)).sum(1)
    return {"min_cosine": float(raw.min()), "min_centred_cosine": float(centred.min()),
            "other_image_centred_cosine": float((unit(a - mean) * np.roll(unit(b - mean), 1, axis=0)).sum(1).max())}


def image_agreement(s: Sizes, device: str, work: Path, cpu: Any) -> dict[str, Any]:
    """Embeddings stored by ``datakit index`` on the device vs fp32 CPU embeddings (plain open_clip transform)."""
    import torch
    from PIL import Image

    from datakit.clip.embed import IndexOptions, build_index
    from datakit.clip.images import parse_input
    from datakit.clip.model import encode_images
    from datakit.clip.store import ClipIndex

    folder = work / "check-images"
    make_jpegs(folder, s.check_images, s.image_size)
    spec = _model_spec(s)
    opts = IndexOptions(spec, device, _precision(device), batch_size=8, workers=2, overwrite=True, progress=False)
    build_index([parse_input(str(folder))], work / "check-index", opts, notify=lambda m: None)
    dd = device_decode_rate(folder, work / "check-index-dd", replace(opts, decode="device"), 1.0)
    index = ClipIndex(work / "check-index")
    stored = np.concatenate(list(index.part_arrays())).astype(np.float32)
    files = [folder / p for p in index.table().column("path").to_pylist()]
    with torch.inference_mode():
        batch = torch.stack([cpu.transform(Image.open(f).convert("RGB")) for f in files])
        ref = np.concatenate([encode_images(cpu, batch[i:i + 4]).astype(np.float32) for i in range(0, len(files), 4)])
    out = {"images": len(files), "device_precision": _precision(device), **_cosines(stored, ref)}
    if "device_decode_rate" in dd:  # the device decoder ran: its embeddings against the same reference
        on_dev = np.concatenate(list(ClipIndex(work / "check-index-dd").part_arrays())).astype(np.float32)
        out["device_decode"] = _cosines(on_dev, ref)
    else:
        out["device_decode"] = dd
    return out


def text_agreement(s: Sizes, device: str, cpu: Any) -> dict[str, Any]:
    """Prompt embeddings (cut batches) on the device in its precision vs fp32 on CPU over the full context."""
    from datakit.clip.model import load_model
    from datakit.clip.prompts import encode_texts, load_categories, load_templates, prompts_of

    prompts = prompts_of(load_categories("coco80")[:4], load_templates()[:20])
    dev = encode_texts(load_model(_model_spec(s), device, _precision(device)), prompts)
    ref = encode_texts(cpu, prompts, cut=False)
    return {"prompts": len(prompts), **_cosines(dev, ref)}


def cuda_tests(device: str, budget: float) -> dict[str, Any]:
    """``pytest -m cuda`` on the modules that have such tests (GPU only: on CPU they would skip, and this check
    itself runs inside the test suite)."""
    if not device.startswith("cuda"):
        return {"skipped": "no CUDA device"}
    # the test modules that hold CUDA tests (collecting the whole suite would import what this machine lacks)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *files]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {budget:.0f}s"}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return {"ok": proc.returncode == 0, "returncode": proc.returncode, "summary": lines[-1] if lines else "",
            "tail": lines[-15:] if proc.returncode else []}


def section_correctness(s: Sizes, device: str, work: Path) -> dict[str, Any]:
    from datakit.clip.model import load_model

    t = time.perf_counter()
    cpu = load_model(_model_spec(s), "cpu", "fp32")
    images = image_agreement(s, device, work, cpu)
    text = text_agreement(s, device, cpu)
    tests = cuda_tests(device, max(20.0, s.budgets["correctness"] - (time.perf_counter() - t) - 5))
    ok = images["min_cosine"] >= 0.999 and text["min_cosine"] >= 0.999 and tests.get("ok", True)
    return {"images": images, "text": text, "goal_cosine": 0.999, "pytest_cuda": tests, "ok": bool(ok)}


RUNNERS: dict[str, Callable[[Sizes, str, Path], dict[str, Any]]] = {
    "index": section_index, "retrieval": section_retrieval, "training": section_training,
    "correctness": section_correctness,
}


# ---------------------------------------------------------------------------------------------- driver


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
