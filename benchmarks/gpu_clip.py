"""Device check sections on the CLIP side: indexing throughput, GPU-resident retrieval, and correctness."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gpu_common import ROOT, Sizes, cosines, make_jpegs, median, model_spec, precision, timed

# ---------------------------------------------------------------------------------------------- index


def forward_rate(loaded: Any, batch: int, batches: int) -> float:
    """images/s of ``encode_image`` alone on random tensors already on the device (after 2 warm-up batches)."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(loaded.precision, torch.float32)
    size = loaded.identity["preprocess"]["size"]
    x = torch.randn(batch, 3, size[0], size[1], device=loaded.device).to(dtype)
    with torch.inference_mode():
        for _ in range(2):
            loaded.model.encode_image(x)
        sec, _ = timed(lambda: [loaded.model.encode_image(x) for _ in range(batches)], loaded.device)
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
    spec, prec = model_spec(s), precision(device)
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
    cold, _ = timed(lambda: exact_topk(q, parts, s.k), device)
    runs = [timed(lambda: exact_topk(q, parts, s.k), device) for _ in range(3)]
    resident = median([r[0] for r in runs])
    top = runs[0][1]
    host = [p.cpu().numpy() for p in parts]
    backend = "torch" if device.startswith("cuda") else "numpy"  # tiny CPU mode: the other code path
    cpu_sec, cpu = timed(lambda: exact_topk(q, host, s.k, SearchOptions(backend=backend, device="cpu")), "cpu")
    out = {"rows": s.rows, "dim": s.dim, "categories": s.categories, "k": s.k, "device": device,
           "resident_seconds": round(resident, 4), "resident_cold_seconds": round(cold, 4),
           "cpu_seconds": round(cpu_sec, 3), "cpu_backend": backend, "goal_seconds": 1.0, **compare_topk(top, cpu)}
    if device.startswith("cuda"):
        sec, _ = timed(lambda: exact_topk(q, host, s.k, SearchOptions(backend="torch", device=device)), device)
        out["host_to_gpu_seconds"] = round(sec, 3)
    out["speedup_vs_cpu"] = round(cpu_sec / resident, 1)
    out["ok"] = bool(out["sets_equal"] and resident < 1.0)
    return out


# ---------------------------------------------------------------------------------------- correctness


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
    spec = model_spec(s)
    opts = IndexOptions(spec, device, precision(device), batch_size=8, workers=2, overwrite=True, progress=False)
    build_index([parse_input(str(folder))], work / "check-index", opts, notify=lambda m: None)
    dd = device_decode_rate(folder, work / "check-index-dd", replace(opts, decode="device"), 1.0)
    index = ClipIndex(work / "check-index")
    stored = np.concatenate(list(index.part_arrays())).astype(np.float32)
    files = [folder / p for p in index.table().column("path").to_pylist()]
    with torch.inference_mode():
        batch = torch.stack([cpu.transform(Image.open(f).convert("RGB")) for f in files])
        ref = np.concatenate([encode_images(cpu, batch[i:i + 4]).astype(np.float32) for i in range(0, len(files), 4)])
    out = {"images": len(files), "device_precision": precision(device), **cosines(stored, ref)}
    if "device_decode_rate" in dd:  # the device decoder ran: its embeddings against the same reference
        on_dev = np.concatenate(list(ClipIndex(work / "check-index-dd").part_arrays())).astype(np.float32)
        out["device_decode"] = cosines(on_dev, ref)
    else:
        out["device_decode"] = dd
    return out


def text_agreement(s: Sizes, device: str, cpu: Any) -> dict[str, Any]:
    """Prompt embeddings (cut batches) on the device in its precision vs fp32 on CPU over the full context."""
    from datakit.clip.model import load_model
    from datakit.clip.prompts import encode_texts, load_categories, load_templates, prompts_of

    prompts = prompts_of(load_categories("coco80")[:4], load_templates()[:20])
    dev = encode_texts(load_model(model_spec(s), device, precision(device)), prompts)
    ref = encode_texts(cpu, prompts, cut=False)
    return {"prompts": len(prompts), **cosines(dev, ref)}


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
    cpu = load_model(model_spec(s), "cpu", "fp32")
    images = image_agreement(s, device, work, cpu)
    text = text_agreement(s, device, cpu)
    tests = cuda_tests(device, max(20.0, s.budgets["correctness"] - (time.perf_counter() - t) - 5))
    ok = images["min_cosine"] >= 0.999 and text["min_cosine"] >= 0.999 and tests.get("ok", True)
    return {"images": images, "text": text, "goal_cosine": 0.999, "pytest_cuda": tests, "ok": bool(ok)}
