"""Benchmark: top-k retrieval of C categories over N x D float16 embeddings (ZUTIS: 80 x top-500 over 2.7M x 768).

Compares, in one run on the same data:
  zutis    ZUTIS's method: all C x N float32 scores, then a full torch.argsort per category
           (scores computed chunk-wise here to spare memory; ZUTIS holds all rows in float32 at once)
  naive    a plain chunked top-k: per 10k-row part, numpy float32 matmul + argpartition, then one final sort
  datakit  datakit.clip.topk.exact_topk (torch and numpy backends)
  faiss    faiss.IndexFlatIP (exact), when faiss is installed and the float32 copy fits in memory
Prints seconds, ratio against zutis, and whether the top-k sets agree.

With ``--text`` it times the text side instead (random weights, CPU unless --device): every prompt
of a category list x ZUTIS's 85 templates through the text tower, the old way (full 77-token
context, prompts in order) against datakit's (length-sorted batches cut to their longest prompt),
in interleaved rounds, and then a second ``retrieve``'s text step, answered by the cache.

    python benchmarks/bench_retrieve.py --rows 200000      # quick
    python benchmarks/bench_retrieve.py                    # full size: 2.7M x 768 (4.1 GB fp16)
    python benchmarks/bench_retrieve.py --text             # coco80 x 85 templates, ViT-B-32 text tower
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datakit.clip.topk import SearchOptions, TopK, exact_topk  # noqa: E402

PART = 10_000


def make_data(rows: int, dim: int, cats: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm float16 rows (made in chunks to bound memory) and unit float32 queries."""
    rng = np.random.default_rng(seed)
    x = np.empty((rows, dim), np.float16)
    for s in range(0, rows, 100_000):
        blk = rng.standard_normal((min(100_000, rows - s), dim), dtype=np.float32)
        blk /= np.linalg.norm(blk, axis=1, keepdims=True)
        x[s:s + len(blk)] = blk
    q = rng.standard_normal((cats, dim), dtype=np.float32)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    # queries near a few rows make the top scores stand out, as real category prompts do
    q = 0.6 * q + 0.4 * x[rng.integers(0, rows, cats)].astype(np.float32)
    return x, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def zutis(q: np.ndarray, x: np.ndarray, k: int) -> TopK:
    import torch

    qt = torch.from_numpy(q)
    sims = torch.empty((q.shape[0], x.shape[0]), dtype=torch.float32)
    for s in range(0, x.shape[0], 65_536):
        torch.mm(qt, torch.from_numpy(x[s:s + 65_536]).float().T, out=sims[:, s:s + 65_536])
    rows = np.stack([torch.argsort(sims[c], descending=True)[:k].numpy() for c in range(q.shape[0])])
    return TopK(np.take_along_axis(sims.numpy(), rows, 1), rows)


def naive(q: np.ndarray, x: np.ndarray, k: int) -> TopK:
    cand_s, cand_r = [], []
    for s in range(0, x.shape[0], PART):
        sc = q @ x[s:s + PART].astype(np.float32).T
        kk = min(k, sc.shape[1])
        idx = np.argpartition(-sc, kk - 1, axis=1)[:, :kk]
        cand_s.append(np.take_along_axis(sc, idx, 1))
        cand_r.append(idx + s)
    s_all, r_all = np.hstack(cand_s), np.hstack(cand_r)
    order = np.argsort(-s_all, axis=1)[:, :k]
    return TopK(np.take_along_axis(s_all, order, 1), np.take_along_axis(r_all, order, 1))


def datakit_method(backend: str, device: str = "cpu") -> Callable[[np.ndarray, np.ndarray, int], TopK]:
    def run(q: np.ndarray, x: np.ndarray, k: int) -> TopK:
        parts = [x[s:s + PART] for s in range(0, x.shape[0], PART)]  # an index's part files, as views
        return exact_topk(q, parts, k, SearchOptions(backend=backend, device=device))
    return run


def faiss_flat(q: np.ndarray, x: np.ndarray, k: int) -> TopK:
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    for s in range(0, x.shape[0], 65_536):
        index.add(x[s:s + 65_536].astype(np.float32))
    scores, rows = index.search(q, k)
    return TopK(scores, rows.astype(np.int64))


def text_bench(model: str, categories: str, rounds: int, device: str) -> None:
    """Old vs new prompt encoding, side by side, and the cache-hit time of retrieve's text step."""
    import statistics
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from datakit.clip import retrieve as retrieve_mod
    from datakit.clip.model import ModelSpec, load_model
    from datakit.clip.prompts import encode_texts, ensemble, load_categories, load_templates, prompts_of

    cats, templates = load_categories(categories), load_templates()
    prompts = prompts_of(cats, templates)
    loaded = load_model(ModelSpec(model, None), device)
    print(f"text: {len(cats)} categories x {len(templates)} templates = {len(prompts):,} prompts; {model} text tower "
          f"(random weights) on {loaded.device} {loaded.precision}; torch threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}", flush=True)
    times: dict[str, list[float]] = {"old": [], "new": []}
    out: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for name, cut in (("old", False), ("new", True)):
            t = time.perf_counter()
            out[name] = encode_texts(loaded, prompts, 256, cut=cut)
            times[name].append(time.perf_counter() - t)
            print(f"  round {r + 1}: {name} {times[name][-1]:8.2f}s", flush=True)
    cos = float((out["old"] * out["new"]).sum(1).min())
    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    print(f"  old (77-token context, prompts in order) {old:8.2f}s  {len(prompts) / old:8.1f} prompts/s")
    print(f"  new (length-sorted, cut batches)         {new:8.2f}s  {len(prompts) / new:8.1f} prompts/s   "
          f"{old / new:.2f}x faster; min cosine old/new {cos:.7f}")
    with tempfile.TemporaryDirectory() as cache:
        opts = retrieve_mod.RetrieveOptions(categories=categories, device=device, text_cache=cache, progress=False)
        spec = ModelSpec(model, None)
        from datakit.clip import text_cache

        text_cache.save(Path(cache), text_cache.text_key(spec, cats, templates),
                        ensemble(out["new"], len(cats), len(templates)),
                        {"identity": loaded.identity, "device": loaded.device, "precision": loaded.precision, "notes": []})
        hits = []
        for _ in range(max(3, rounds)):
            t = time.perf_counter()
            _, source = retrieve_mod._queries(loaded.identity, cats, templates, opts, [])
            hits.append(time.perf_counter() - t)
            assert source == "cache"
    hit = statistics.median(hits)
    print(f"  second retrieve, text step from the cache {hit * 1000:8.1f} ms   {new / hit:,.0f}x faster than encoding")


def agreement(a: TopK, b: TopK) -> float:
    same = sum(len(set(ra.tolist()) & set(rb.tolist())) for ra, rb in zip(a.rows, b.rows))
    return same / a.rows.size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_700_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--categories", type=int, default=80)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--skip", default="", help="comma-separated methods to skip")
    ap.add_argument("--repeat", type=int, default=2, help="rounds over all methods; the best time of each is kept "
                    "(shared machines are noisy)")
    ap.add_argument("--text", action="store_true", help="time the text side (prompt encoding, cache) instead")
    ap.add_argument("--text-model", default="ViT-B-32")
    ap.add_argument("--text-categories", default="coco80")
    ap.add_argument("--text-rounds", type=int, default=1, help="interleaved old/new rounds (the median is kept)")
    ap.add_argument("--device", default="cpu", help="device of the text tower with --text")
    args = ap.parse_args()

    import torch

    if args.text:
        if args.threads:
            torch.set_num_threads(args.threads)
        text_bench(args.text_model, args.text_categories, args.text_rounds, args.device)
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    x, q = make_data(args.rows, args.dim, args.categories)
    print(f"data: {args.rows:,} x {args.dim} float16 ({x.nbytes / 2**30:.2f} GiB), {args.categories} queries, "
          f"k={args.k}; made in {time.perf_counter() - t0:.1f}s; torch threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}", flush=True)

    methods: dict[str, Callable[[np.ndarray, np.ndarray, int], TopK]] = {
        "zutis (matmul + full argsort)": zutis,
        "naive chunked top-k (numpy)": naive,
        "datakit exact (torch cpu)": datakit_method("torch"),
        "datakit exact (numpy)": datakit_method("numpy"),
    }
    if torch.cuda.is_available():
        methods["datakit exact (torch cuda)"] = datakit_method("torch", "cuda")
    try:
        import faiss  # noqa: F401

        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if x.size * 4 < 0.6 * free:
            methods["faiss IndexFlatIP (exact)"] = faiss_flat
        else:
            print("faiss: skipped, its float32 copy would not fit in free memory")
    except ImportError:
        print("faiss: not installed, skipped")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    results: dict[str, tuple[float, TopK]] = {}
    for round_ in range(args.repeat):
        for name, fn in methods.items():
            if any(s in name for s in skip):
                continue
            t = time.perf_counter()
            res = fn(q, x, args.k)
            sec = time.perf_counter() - t
            if name not in results or sec < results[name][0]:
                results[name] = (sec, res)
            print(f"  round {round_ + 1}: {name:34s} {sec:8.2f}s", flush=True)

    base_name = "zutis (matmul + full argsort)"
    base = results.get(base_name)
    ref = results.get("datakit exact (torch cpu)") or next(iter(results.values()))
    print(f"\nbest of {args.repeat} round(s)\n{'method':34s} {'seconds':>8s} {'vs zutis':>9s} {'same top-k':>11s}")
    for name, (sec, res) in results.items():
        ratio = f"{base[0] / sec:8.2f}x" if base else "      n/a"
        print(f"{name:34s} {sec:8.2f} {ratio} {agreement(res, ref[1]) * 100:10.2f}%")


if __name__ == "__main__":
    main()
