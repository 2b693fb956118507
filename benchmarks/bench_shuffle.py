"""How well each shuffle mixes class-sorted shards: distinct classes per global batch.

The layout is ImageNet-1k written class by class (what ``imagefolder``/``imagenet21k`` builds
produced before records were permuted): 1000 classes x 1300 samples in shards of 1000 samples
(~100 MB of ~100 KB JPEGs). A global batch is 256 consecutive positions of the epoch order,
which is exactly what datakit's partition hands to the ranks at one step. Only the order is
computed (no I/O): the table compares datakit's modes (the old default remote window of 4
shards, windows sized from a cache budget, global) with MosaicML Streaming's py1e / py1s / py1br
when ``mosaicml-streaming`` can be imported (its shuffle and partition functions are pure numpy;
its package ``__init__`` needs transformers, so those sub-packages are loaded on their own). For
Streaming, a global batch is what its ``orig`` partition deals 8 ranks x 8 workers at one step
(32 per device); for datakit, 256 consecutive positions (8 ranks x 32 at one step).

    python benchmarks/bench_shuffle.py [--streaming-path DIR]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import types

import numpy as np

from datakit.stream.order import Shuffle, epoch_order, space_of

CLASSES, PER_CLASS, SHARD, BATCH = 1000, 1300, 1000, 256
SHARD_BYTES = 100 << 20


def classes_per_batch(order: np.ndarray, labels: np.ndarray, batches: int = 400) -> float:
    """Mean distinct classes over ``batches`` global batches spread over the epoch."""
    starts = np.linspace(0, len(order) - BATCH, batches).astype(np.int64)
    return float(np.mean([len(np.unique(labels[order[s : s + BATCH]])) for s in starts]))


def streaming_shuffles(path: str | None):
    """Streaming's shuffle functions, or None with the reason they are unavailable."""
    if path:
        sys.path.insert(0, path)
    try:
        spec = importlib.util.find_spec("streaming")
    except (ImportError, ValueError) as err:
        return None, f"not importable ({err})"
    if spec is None or not spec.submodule_search_locations:
        return None, "mosaicml-streaming is not installed"
    root = list(spec.submodule_search_locations)[0]
    for name, sub in (("streaming", root), ("streaming.base", f"{root}/base")):
        module = types.ModuleType(name)
        module.__path__ = [sub]  # a bare package: skip streaming/__init__.py (it imports transformers)
        sys.modules.setdefault(name, module)
    try:
        shuffle = importlib.import_module("streaming.base.shuffle")
        partition = importlib.import_module("streaming.base.partition")
    except ImportError as err:
        return None, f"its shuffle module does not import ({err})"
    return (shuffle.get_shuffle, partition.get_partitions), "mosaicml-streaming shuffle + partition functions"


def streaming_batches(fns, sizes: np.ndarray, algo: str, ncn: int, seed: int, ranks: int = 8, workers: int = 8) -> np.ndarray:
    """Sample ids of Streaming's global batches (ranks x per-device batch), step by step, one node."""
    get_shuffle, get_partitions = fns
    block = max(4_000_000 // ncn, 1 << 18)  # Streaming's default shuffle_block_size
    order = np.asarray(get_shuffle(algo, sizes, ncn, seed, 0, block))
    parts = np.asarray(get_partitions("orig", int(sizes.sum()), ncn, 1, ranks, workers, BATCH // ranks))[0]
    steps = parts.shape[1] * parts.shape[2]  # a rank's batch k comes from worker k % workers
    rows = [np.concatenate([parts[r, k % workers, k // workers] for r in range(ranks)]) for k in range(steps)]
    ids = np.stack(rows)
    return np.where(ids >= 0, order[np.clip(ids, 0, None)], -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streaming-path", default=None, help="a folder holding the 'streaming' package (pip --target)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    total = CLASSES * PER_CLASS
    labels = np.arange(total) // PER_CLASS
    counts = [SHARD] * (total // SHARD) + ([total % SHARD] if total % SHARD else [])
    space = space_of(counts)
    rows: list[tuple[str, float]] = []
    for name, shuffle in [
        ("datakit none", Shuffle("none")),
        ("datakit shards", Shuffle("shards")),
        ("datakit window 4 shards (old remote default)", Shuffle("window", 4 * SHARD)),
        ("datakit window from 8 GiB cache (38 shards)", Shuffle("window", ((8 << 30) // SHARD_BYTES - 2) // 2 * SHARD)),
        ("datakit window from 64 GiB cache (326 shards)", Shuffle("window", ((64 << 30) // SHARD_BYTES - 2) // 2 * SHARD)),
        ("datakit global (local default; remote that fits)", Shuffle("global")),
    ]:
        rows.append((name, classes_per_batch(epoch_order(space, shuffle, args.seed, 0), labels)))
    fns, note = streaming_shuffles(args.streaming_path)
    if fns is not None:
        sizes = np.asarray(counts, dtype=np.int64)
        for algo, ncn in (("py1e", 1), ("py1br", 1), ("py1s", 1), ("py1e", 64), ("py1s", 64)):
            batches = streaming_batches(fns, sizes, algo, ncn, args.seed)
            picks = np.linspace(0, len(batches) - 1, 400).astype(np.int64)
            value = float(np.mean([len(np.unique(labels[b[b >= 0]])) for b in batches[picks]]))
            default = " = its 1-node default" if (algo, ncn) in (("py1e", 1), ("py1s", 64)) else ""
            rows.append((f"Streaming {algo}, {ncn} canonical node(s){default}", value))
    expected = CLASSES * (1 - (1 - 1 / CLASSES) ** BATCH)
    print(f"{CLASSES} classes x {PER_CLASS} samples written class by class, shards of {SHARD}; distinct classes per "
          f"global batch of {BATCH} (uniform draws would give {expected:.1f}); Streaming: {note}")
    for name, value in rows:
        print(f"  {name:58s} {value:6.1f}  ({value / expected:.2f} of uniform)")


if __name__ == "__main__":
    main()
