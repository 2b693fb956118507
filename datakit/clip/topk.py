"""Exact top-k of query·row scores over float16 row blocks, without sorting all scores.

Scores are float32 products (fp16 rows are widened a cache-sized chunk at a time into a reused
buffer) and land in a [queries, block] buffer. The first block is reduced with torch.topk or
numpy argpartition; once every query holds k results, later blocks only pass the scores above
the query's current k-th score (a cheap filter instead of a top-k). Equal scores are ordered by
the lower global row, so the selection does not depend on chunking. FAISS (exact flat, or
approximate IVF) is available as an option when installed.

Parts may also be torch tensors (``resident`` loads them onto a device once): on a GPU the whole
pooled index then stays in GPU memory in float16 and a search reads nothing from the host. The
same code runs on CPU tensors, which is how the GPU path is tested without a GPU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class TopK:
    """Per query: the k best scores (best first) and their global rows; equal scores by lower row."""

    scores: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class SearchOptions:
    """``method``: exact | faiss-flat | faiss-ivf; ``backend`` (exact): auto | torch | numpy."""

    method: str = "exact"
    backend: str = "auto"
    device: str = "auto"
    block_rows: int = 0  # scores kept before each reduction; 0: 65,536 on CPU, 1,048,576 on GPU
    sub_rows: int = 0  # rows widened to fp32 at once; 0: 2,048 on CPU (stays in cache), 262,144 on GPU
    nprobe: int = 64  # faiss-ivf only


Advance = Callable[[int], None]  # progress: called with the number of rows just scored


def merge_topk(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the k best of each row of candidates, ordered by (score desc, row asc)."""
    order = np.lexsort((rows, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


def _fix_ties(block: np.ndarray, cols: np.ndarray, vals: np.ndarray, need: np.ndarray, thr: np.ndarray,
              k: int) -> None:
    """Where more entries than k reach the k-th value, keep those with the lowest columns (in place)."""
    for r in need:
        cand = np.flatnonzero(block[r] >= thr[r])
        order = np.lexsort((cand, -block[r, cand]))[:k]
        cols[r], vals[r] = cand[order], block[r, cand[order]]


def _select_numpy(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k columns of each row of a score block (numpy argpartition)."""
    m = block.shape[1]
    if m <= k:
        cols = np.broadcast_to(np.arange(m), block.shape).copy()
        return block.copy(), cols
    if m == k + 1:
        part = np.argsort(block, axis=1, kind="stable")
    else:
        part = np.argpartition(block, m - k - 1, axis=1)  # [m-k-1] is the (k+1)-th largest, all after it >= it
    cols = part[:, m - k:]
    vals = np.take_along_axis(block, cols, 1)
    thr = vals.min(axis=1)
    # ties cross the boundary only where the (k+1)-th value equals the k-th: only those rows need a fix
    need = np.flatnonzero(np.take_along_axis(block, part[:, m - k - 1:m - k], 1)[:, 0] >= thr)
    _fix_ties(block, cols, vals, need, thr, k)
    return vals, cols


def _select_torch(block: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k columns of each row of a score block (torch.topk, on the block's device)."""
    import torch

    m = block.shape[1]
    if m <= k:
        return block.cpu().numpy().copy(), np.broadcast_to(np.arange(m), block.shape).copy()
    vals_t, cols_t = torch.topk(block, k + 1, dim=1, sorted=True)
    need = torch.nonzero(vals_t[:, k] >= vals_t[:, k - 1]).flatten().cpu().numpy()
    vals, cols = vals_t[:, :k].cpu().numpy(), cols_t[:, :k].cpu().numpy()
    if len(need):
        _fix_rows_torch(block, cols, vals, need, vals[:, k - 1].copy(), k)
    return vals, cols


def _fix_rows_torch(block: Any, cols: np.ndarray, vals: np.ndarray, need: np.ndarray, thr: np.ndarray, k: int) -> None:
    """Tie repair for torch blocks (rows copied to the host one at a time)."""
    for r in need:
        row = block[int(r)].cpu().numpy()
        cand = np.flatnonzero(row >= thr[r])
        order = np.lexsort((cand, -row[cand]))[:k]
        cols[r], vals[r] = cand[order], row[cand[order]]


def _is_tensor(x: Any) -> bool:
    """A torch tensor (without importing torch when it is not one)."""
    return type(x).__module__.startswith("torch")


def resident(parts: Sequence[Any], device: str) -> list[Any]:
    """The parts as float16 torch tensors on ``device``, loaded once (one part at a time) for repeated searches."""
    import torch

    out = []
    for i in range(len(parts)):
        arr = parts[i]
        t = arr if _is_tensor(arr) else torch.from_numpy(np.ascontiguousarray(arr))
        out.append(t.to(device=device, dtype=torch.float16))
    return out


def _chunks(parts: Sequence[Any], sub: int) -> Iterator[Any]:
    """Consecutive row slices of at most ``sub`` rows, part after part (each part opened once)."""
    for i in range(len(parts)):
        arr = parts[i]
        for start in range(0, arr.shape[0], sub):
            yield arr[start:start + sub]


class _NumpyScorer:
    """float32 scores with numpy/BLAS; the fp16 rows are widened into a reused staging buffer."""

    def __init__(self, queries: np.ndarray, block_rows: int, sub_rows: int) -> None:
        self.q = np.ascontiguousarray(queries, dtype=np.float32)
        self.buf = np.empty((self.q.shape[0], block_rows), np.float32)
        self.stage = np.empty((sub_rows, self.q.shape[1]), np.float32)

    def score(self, rows: Any, at: int) -> None:
        """Scores of ``rows`` (numpy, or a CPU tensor) into block columns ``at:at+len(rows)``."""
        stage = self.stage[: rows.shape[0]]
        np.copyto(stage, rows.numpy() if _is_tensor(rows) else rows)
        self.buf[:, at:at + rows.shape[0]] = self.q @ stage.T

    def select(self, filled: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (values, block columns) of each query in the filled block."""
        return _select_numpy(self.buf[:, :filled], k)

    def above(self, filled: int, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, column, score) of every score strictly above its query's threshold."""
        block = self.buf[:, :filled]
        r, c = np.nonzero(block > thr[:, None])
        return r, c, block[r, c]


class _TorchScorer:
    """float32 scores with torch on CPU or GPU (TF32 off, so GPU scores are full fp32)."""

    def __init__(self, queries: np.ndarray, block_rows: int, sub_rows: int, device: str) -> None:
        import torch

        self.torch, self.device = torch, device
        self.q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(device)
        self.buf = torch.empty((self.q.shape[0], block_rows), dtype=torch.float32, device=device)
        # a reused buffer: a fresh fp32 tensor per chunk costs page faults that can exceed the matmul itself
        self.stage = torch.empty((sub_rows, self.q.shape[1]), dtype=torch.float32, device=device)

    def score(self, rows: Any, at: int) -> None:
        """Scores of ``rows`` (numpy, or a tensor on any device) into block columns ``at:at+len(rows)``."""
        if _is_tensor(rows):
            x = rows
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # read-only memmap: torch only reads it
                x = self.torch.from_numpy(rows)
        stage = self.stage[: rows.shape[0]]
        stage.copy_(x)
        self.torch.mm(self.q, stage.T, out=self.buf[:, at:at + rows.shape[0]])

    def select(self, filled: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (values, block columns) of each query in the filled block."""
        return _select_torch(self.buf[:, :filled], k)

    def above(self, filled: int, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, column, score) of every score strictly above its query's threshold."""
        block = self.buf[:, :filled]
        t = self.torch.from_numpy(np.ascontiguousarray(thr, np.float32)).to(self.device)
        nz = self.torch.nonzero(block > t[:, None])
        vals = block[nz[:, 0], nz[:, 1]]
        nz_np = nz.cpu().numpy()
        return nz_np[:, 0], nz_np[:, 1], vals.cpu().numpy()


def merge_flat(best_v: np.ndarray, best_r: np.ndarray, cat: np.ndarray, vals: np.ndarray, rows: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge full [C, k] lists with loose (query, score, row) candidates; same order rule as merge_topk."""
    n_cat = best_v.shape[0]
    cat_all = np.concatenate([np.repeat(np.arange(n_cat), k), cat])
    sc = np.concatenate([best_v.ravel(), vals.astype(np.float32)])
    rw = np.concatenate([best_r.ravel(), rows.astype(np.int64)])
    order = np.lexsort((rw, -sc, cat_all))
    starts = np.concatenate([[0], np.cumsum(np.bincount(cat_all, minlength=n_cat))[:-1]])
    pick = order[starts[:, None] + np.arange(k)[None, :]]
    return sc[pick], rw[pick]


def _resolve(opts: SearchOptions, on: set[str] = frozenset()) -> tuple[str, str]:  # type: ignore[assignment]
    """(backend, device) for the exact search; a GPU asked for but missing is an error. Parts resident
    on a GPU (``on``: the devices of tensor parts) are searched there, with torch."""
    backend, device = opts.backend, "cpu"
    if backend not in ("auto", "torch", "numpy"):
        raise InputError(f"unknown search backend {backend!r}; use auto, torch or numpy")
    gpu = sorted(d for d in on if d != "cpu")
    if gpu:
        if backend == "numpy" or len(on) > 1:
            raise InputError(f"parts resident on {sorted(on)} can only be searched with the torch backend on that device")
        return "torch", gpu[0]
    if backend == "numpy":
        if opts.device.startswith("cuda"):
            raise InputError("the numpy backend runs on CPU only")
        return "numpy", "cpu"
    try:
        import torch
    except ImportError:
        if backend == "torch":
            raise InputError("--backend torch needs torch installed") from None
        return "numpy", "cpu"
    if opts.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {opts.device} was asked for but torch sees no GPU")
    else:
        device = opts.device
    return "torch", device


def exact_topk(queries: np.ndarray, parts: Sequence[Any], k: int, opts: SearchOptions = SearchOptions(),
               advance: Advance | None = None) -> TopK:
    """Exact top-k over the concatenation of ``parts`` (float16 [n_i, d], numpy or torch); rows are global
    positions. ``advance(n)`` is called as rows are scored."""
    q = np.asarray(queries, np.float32)
    shapes, on = [], set()
    for i in range(len(parts)):  # opens each part once (a PartList maps parts on access)
        part = parts[i]
        shapes.append(tuple(part.shape))
        if _is_tensor(part):
            on.add(str(part.device))
    total = sum(s[0] for s in shapes)
    if q.ndim != 2 or any(len(s) != 2 or s[1] != q.shape[1] for s in shapes):
        raise InputError(f"query dim {q.shape[-1]} does not match the embeddings")
    kk = min(k, total)
    best_v = np.zeros((q.shape[0], 0), np.float32)
    best_r = np.zeros((q.shape[0], 0), np.int64)
    if kk == 0:
        return TopK(best_v, best_r)
    backend, device = _resolve(opts, on)
    gpu = device.startswith("cuda")
    block = opts.block_rows or (1 << 20 if gpu else 1 << 16)
    block = max(block, kk)
    sub = min(opts.sub_rows or (1 << 18 if gpu else 2048), block)
    scorer: Any = _TorchScorer(q, block, sub, device) if backend == "torch" else _NumpyScorer(q, block, sub)

    def reduce(filled: int, base: int, best: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Fold one block into the running lists. Once they are full, only scores above each list's last
        one can enter (a later row never wins a tie), so a cheap filter replaces the top-k."""
        if best[0].shape[1] < kk:
            vals, cols = scorer.select(filled, kk)
            return merge_topk(np.hstack([best[0], vals]), np.hstack([best[1], cols + base]), kk)
        cat, cols, vals = scorer.above(filled, best[0][:, -1])
        return merge_flat(best[0], best[1], cat, vals, cols + base, kk) if len(cat) else best

    best = (best_v, best_r)
    with _full_fp32(backend == "torch"):
        base, filled = 0, 0
        for rows in _chunks(parts, sub):
            if filled + rows.shape[0] > block:
                best = reduce(filled, base, best)
                base, filled = base + filled, 0
            scorer.score(rows, filled)
            filled += rows.shape[0]
            if advance is not None:
                advance(int(rows.shape[0]))
        if filled:
            best = reduce(filled, base, best)
    best_v, best_r = best
    return TopK(best_v, best_r)


class _full_fp32:
    """Context: torch float32 matmuls at full precision (no TF32) for exact, device-independent scores."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.saved: str | None = None

    def __enter__(self) -> None:
        if self.active:
            import torch

            self.saved = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc: object) -> None:
        if self.active and self.saved is not None:
            import torch

            torch.set_float32_matmul_precision(self.saved)


def _faiss() -> Any:
    """The faiss module, or an InputError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise InputError("this search method needs faiss: pip install faiss-cpu (or faiss-gpu)") from None
    return faiss


def _faiss_search(index: Any, q: np.ndarray, parts: Sequence[np.ndarray], k: int, train: bool,
                  advance: Advance | None) -> TopK:
    """Add every row (train first for IVF), search, and order results like the exact search."""
    if train:
        per_part = max(1, 200_000 // max(len(parts), 1))
        sample = np.concatenate([np.asarray(parts[i][:per_part], np.float32) for i in range(len(parts))])
        index.train(sample)
    for rows in _chunks(parts, 1 << 16):
        index.add(np.asarray(rows, np.float32))
        if advance is not None:
            advance(int(rows.shape[0]))
    total = sum(parts[i].shape[0] for i in range(len(parts)))
    scores, rows = index.search(np.ascontiguousarray(q, np.float32), min(k, total))
    valid = rows >= 0
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    s, r = merge_topk(scores, rows.astype(np.int64), scores.shape[1])
    return TopK(s, r)


def faiss_flat_topk(queries: np.ndarray, parts: Sequence[np.ndarray], k: int, opts: SearchOptions,
                    advance: Advance | None = None) -> TopK:
    """FAISS exact inner product (IndexFlatIP); holds every row in float32 memory."""
    faiss = _faiss()
    return _faiss_search(faiss.IndexFlatIP(queries.shape[1]), queries, parts, k, False, advance)


def faiss_ivf_topk(queries: np.ndarray, parts: Sequence[np.ndarray], k: int, opts: SearchOptions,
                   advance: Advance | None = None) -> TopK:
    """FAISS IVF-flat, inner product: approximate (may miss true neighbours); ``nprobe`` trades recall for time."""
    faiss = _faiss()
    total = sum(parts[i].shape[0] for i in range(len(parts)))
    nlist = max(1, min(int(4 * np.sqrt(max(total, 1))), total // 39 or 1))
    quantizer = faiss.IndexFlatIP(queries.shape[1])
    index = faiss.IndexIVFFlat(quantizer, queries.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = min(opts.nprobe, nlist)
    return _faiss_search(index, queries, parts, k, True, advance)


SEARCH_METHODS: dict[str, Callable[[np.ndarray, Sequence[np.ndarray], int, SearchOptions, Advance | None], TopK]] = {
    "exact": exact_topk,
    "faiss-flat": faiss_flat_topk,
    "faiss-ivf": faiss_ivf_topk,
}


def search(queries: np.ndarray, parts: Sequence[Any], k: int, opts: SearchOptions = SearchOptions(),
           advance: Advance | None = None) -> TopK:
    """Top-k by the chosen method (exact by default); ``advance(n)`` reports rows done."""
    if opts.method not in SEARCH_METHODS:
        raise InputError(f"unknown search method {opts.method!r}; use one of {sorted(SEARCH_METHODS)}")
    return SEARCH_METHODS[opts.method](queries, parts, k, opts, advance)
