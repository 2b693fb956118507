"""``datakit retrieve``: top-N images per category name from one or several pooled CLIP indexes.

Writes ZUTIS's ``category_to_p_images_n{N}.json`` (keys in category order, paths best first,
rewritable with ``--path-root``), ``retrieval.parquet`` (ranks and scores), ``report.json``/``.md``,
``text_embeddings.npy``, optional contact sheets and optional labelled shards. The category
embeddings are cached per text model, template list and category list (``text_cache``), so a
second run with the same prompts does not load the text tower at all.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import text_cache
from ..errors import InputError
from ..io import atomic_save_npy, atomic_write_bytes, atomic_write_json, atomic_write_parquet, atomic_write_text
from ..progress import ProgressBar
from .export import Entry, RetrievedSource, locate_images, make_record
from .model import ModelSpec, describe, load_model, same_model
from .prompts import load_categories, load_templates, text_embeddings
from .report import DEDUP_MODES, Selection, build_report, report_markdown, select, zutis_labels
from .sheet import write_sheet
from .store import ClipIndex, PartList
from .topk import SearchOptions, search

ZUTIS_PATH_RULES = (re.compile(r"/ImageNet2012/[^/]+/n\d{8}/[^/]+$"), re.compile(r"/pass/images/[^/]+$"))


@dataclass(frozen=True)
class RetrieveOptions:
    """Everything ``retrieve`` needs besides the index folders and the output folder."""

    categories: str = "coco80"
    n: int = 500
    templates: str | None = None
    model: ModelSpec | None = None  # text model; default: the one recorded in the index
    device: str = "auto"
    search: SearchOptions = SearchOptions()
    dedup: str = "none"
    dedup_pool: int = 2  # with --dedup best: candidates per category = n * dedup_pool
    path_roots: tuple[tuple[str, str], ...] = ()  # (source, root) pairs
    show: int = 0  # images per contact sheet; 0: no sheets
    shards: str | None = None
    shard_size: int = 1000
    workers: int = 1
    overwrite: bool = False  # replace an existing --shards output
    text_cache: str | None = None  # folder of cached category embeddings; None: the user cache; "none": off
    progress: bool = True


@dataclass
class RetrieveResult:
    """Where the outputs went and the numbers worth printing."""

    out: str
    json_path: str
    parquet_path: str
    report: dict[str, Any]
    seconds_text: float = 0.0
    seconds_search: float = 0.0
    text_from: str = ""  # "encoded" or "cache"
    sheets: list[str] = field(default_factory=list)
    shards: Any = None
    notes: list[str] = field(default_factory=list)


def open_indexes(dirs: Sequence[str | Path]) -> list[ClipIndex]:
    """Open the pooled indexes; they must all come from one model."""
    if not dirs:
        raise InputError("give at least one --index")
    indexes = [ClipIndex(d) for d in dirs]
    first = indexes[0].identity
    for d, idx in zip(dirs[1:], indexes[1:]):
        if not same_model(idx.identity, first):
            raise InputError(f"{d} was embedded by {describe(idx.identity)}, {dirs[0]} by {describe(first)}: "
                             "pooled indexes must share one model")
    return indexes


def text_model_spec(identity: dict[str, Any], override: ModelSpec | None) -> ModelSpec:
    """The model for the text side: the override, else the one recorded in the index."""
    if override is not None:
        return override
    pretrained = identity.get("pretrained")
    if isinstance(pretrained, str) and pretrained.startswith("file:"):
        raise InputError(f"the index was embedded with the local checkpoint {pretrained[5:]}: "
                         "pass the same file with --pretrained for the text side")
    return ModelSpec(identity["name"], pretrained)


def _image_root(index: ClipIndex, source: str) -> str | None:
    """The folder an index's source was read from (None for shard inputs, whose paths are relative)."""
    for s in index.manifest["sources"]:
        if s["name"] == source:
            return s.get("root") if s.get("kind") != "shards" else None
    return None


def image_path_for(index: ClipIndex, entry: Entry, roots: dict[str, str]) -> str:
    """The path written to the JSON: ``--path-root`` for the source if given, else where it was indexed."""
    root = roots.get(entry.source) or _image_root(index, entry.source)
    return f"{root.rstrip('/')}/{entry.path}" if root else entry.path


def _entries(indexes: Sequence[ClipIndex], rows: np.ndarray) -> dict[int, Entry]:
    """Table rows of the given global rows (pooled order: first index's rows first)."""
    offsets = np.cumsum([0] + [i.count for i in indexes])
    out: dict[int, Entry] = {}
    uniq = np.unique(rows)
    which = np.searchsorted(offsets, uniq, side="right") - 1
    for i, idx in enumerate(indexes):
        mine = uniq[which == i]
        if not len(mine):
            continue
        cols = idx.table().take(mine - offsets[i]).to_pydict()
        for j, g in enumerate(mine.tolist()):
            out[g] = Entry(i, g - int(offsets[i]), cols["source"][j], cols["key"][j], cols["path"][j],
                           cols["wnid"][j], int(cols["part"][j]))
    return out


def _write_json(path: Path, obj: Any) -> None:
    """Compact JSON (like ZUTIS's ujson output), written atomically."""
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode())


def _write_parquet(path: Path, categories: list[str], sel: Selection, entries: dict[int, Entry],
                   paths: dict[int, str], counts: dict[int, int]) -> None:
    """One row per listed image: category, label, rank, score and where the image is."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {k: [] for k in
                                  ("category", "label", "rank", "score", "key", "source", "path", "wnid", "index",
                                   "row", "n_categories")}
    for c, (rows, scores) in enumerate(zip(sel.rows, sel.scores)):
        for rank, (g, s) in enumerate(zip(rows.tolist(), scores.tolist()), start=1):
            e = entries[g]
            for k, v in (("category", categories[c]), ("label", c + 1), ("rank", rank), ("score", s), ("key", e.key),
                         ("source", e.source), ("path", paths[g]), ("wnid", e.wnid), ("index", e.index),
                         ("row", e.row), ("n_categories", counts[g])):
                cols[k].append(v)
    types = {"category": pa.string(), "label": pa.int32(), "rank": pa.int32(), "score": pa.float32(),
             "key": pa.string(), "source": pa.string(), "path": pa.string(), "wnid": pa.string(),
             "index": pa.int32(), "row": pa.int64(), "n_categories": pa.int32()}
    atomic_write_parquet(path, pa.table({k: pa.array(v, types[k]) for k, v in cols.items()}))


def _zutis_path_note(paths: Sequence[str]) -> str | None:
    """A warning when paths would fail ZUTIS's loader checks, else None."""
    bad = [p for p in paths if not any(rule.search(p) for rule in ZUTIS_PATH_RULES)]
    if not bad:
        return None
    return (f"{len(bad)} of {len(paths)} paths do not follow ZUTIS's layout (.../ImageNet2012/train/<wnid>/<file> or "
            f".../pass/images/<file>), e.g. {bad[0]!r}; ZUTIS's loader rejects them: use --path-root SOURCE=DIR")


def _check_text_model(text_identity: dict[str, Any], identity: dict[str, Any], notes: list[str]) -> None:
    """The text tower must be the index's architecture; other weights of it only earn a note."""
    if text_identity["name"] != identity["name"] or int(text_identity["dim"]) != int(identity["dim"]):
        raise InputError(f"text model {describe(text_identity)} does not match the index's {describe(identity)}")
    if not same_model(text_identity, identity):
        notes.append(f"text weights ({text_identity['pretrained']}) are not the ones recorded in the index "
                     f"({identity['pretrained']}); make sure they are the same model")


def _encode_queries(spec: ModelSpec, identity: dict[str, Any], categories: list[str], templates: list[str],
                    opts: RetrieveOptions, notes: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Load the text tower and encode every prompt (batched, with progress); returns the embeddings and their record."""
    loaded = load_model(spec, opts.device)
    notes += loaded.notes
    _check_text_model(loaded.identity, identity, notes)
    t0 = time.perf_counter()
    with ProgressBar(len(categories) * len(templates), "text prompts", opts.progress, unit="prompts") as bar:
        queries = text_embeddings(loaded, categories, templates, advance=bar.advance).astype(np.float32)
    made = {"identity": loaded.identity, "device": loaded.device, "precision": loaded.precision,
            "notes": list(loaded.notes), "seconds": round(time.perf_counter() - t0, 3)}
    if loaded.device.startswith("cuda"):
        import torch

        del loaded
        torch.cuda.empty_cache()  # leave the GPU to the search
    return queries, made


def _queries(identity: dict[str, Any], categories: list[str], templates: list[str], opts: RetrieveOptions,
             notes: list[str]) -> tuple[np.ndarray, str]:
    """Prompt-ensembled text embeddings (from the cache when the same model, templates and categories were
    encoded before), checked against the index's model; returns them and where they came from."""
    spec = text_model_spec(identity, opts.model)
    folder = text_cache.resolve_dir(opts.text_cache)
    key = text_cache.text_key(spec, categories, templates)
    hit = text_cache.load(folder, key, int(identity["dim"]))
    if hit is not None:
        notes += hit.meta.get("notes", [])
        _check_text_model(hit.meta["identity"], identity, notes)
        return hit.embeddings, "cache"
    queries, made = _encode_queries(spec, identity, categories, templates, opts, notes)
    note = text_cache.save(folder, key, queries, made)
    if note:
        notes.append(note)
    return queries, "encoded"


def retrieve(index_dirs: Sequence[str | Path], out: str | Path, opts: RetrieveOptions = RetrieveOptions()) -> RetrieveResult:
    """Rank every pooled image for every category and write the outputs into ``out``."""
    if opts.n < 1:
        raise InputError("--n must be at least 1")
    if opts.dedup not in DEDUP_MODES:
        raise InputError(f"--dedup must be one of {DEDUP_MODES}, not {opts.dedup!r}")
    indexes = open_indexes(index_dirs)
    identity = indexes[0].identity
    categories = load_categories(opts.categories)
    templates = load_templates(opts.templates)
    roots = dict(opts.path_roots)
    known = {s["name"] for i in indexes for s in i.manifest["sources"]}
    unknown = sorted(set(roots) - known)
    if unknown:
        raise InputError(f"--path-root names unknown source(s) {unknown}; the indexes hold {sorted(known)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    t0 = time.perf_counter()
    queries, text_from = _queries(identity, categories, templates, opts, notes)
    atomic_save_npy(out / "text_embeddings.npy", queries)
    t1 = time.perf_counter()

    parts = PartList.join([idx.part_arrays() for idx in indexes])
    k = opts.n if opts.dedup == "none" else opts.n * max(1, opts.dedup_pool)
    with ProgressBar(parts.total, f"search {len(categories)} categories", opts.progress, unit="rows") as bar:
        top = search(queries, parts, k, opts.search, bar.advance)
    sel = select(top.scores, top.rows, opts.n, opts.dedup)
    t2 = time.perf_counter()

    listed = np.concatenate(sel.rows) if sel.rows else np.zeros(0, np.int64)
    entries = _entries(indexes, listed)
    paths = {g: image_path_for(indexes[e.index], e, roots) for g, e in entries.items()}
    counts: dict[int, int] = {}
    for rows in sel.rows:
        for g in rows.tolist():
            counts[g] = counts.get(g, 0) + 1
    json_path = out / f"category_to_p_images_n{opts.n}.json"
    _write_json(json_path, {c: [paths[g] for g in sel.rows[i].tolist()] for i, c in enumerate(categories)})
    parquet_path = out / "retrieval.parquet"
    _write_parquet(parquet_path, categories, sel, entries, paths, counts)
    report = build_report(categories, sel, [entries[g].source for g in listed.tolist()], opts.n, opts.dedup)
    note = _zutis_path_note(list(paths.values()))
    if note:
        notes.append(note)
    report.update({"indexes": [str(d) for d in index_dirs], "model": identity, "categories_from": opts.categories,
                   "templates": len(templates), "search": opts.search.method, "pooled_images": int(sum(i.count for i in indexes)),
                   "text_embeddings": text_from, "zutis_paths_ok": note is None, "notes": notes})
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", report_markdown(report))
    result = RetrieveResult(str(out), str(json_path), str(parquet_path), report, round(t1 - t0, 3), round(t2 - t1, 3),
                            text_from, notes=notes)
    scratch = out / ".scratch"
    try:
        if opts.show > 0:
            result.sheets = _sheets(indexes, categories, sel, entries, out / "sheets", scratch, roots, opts.show)
        if opts.shards:
            result.shards = _shards(indexes, categories, sel, entries, scratch, roots, opts)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _sheets(indexes: Sequence[ClipIndex], categories: list[str], sel: Selection, entries: dict[int, Entry],
            folder: Path, scratch: Path, roots: dict[str, str], show: int) -> list[str]:
    """One contact sheet per category with its top ``show`` images."""
    wanted = [entries[g] for rows in sel.rows for g in rows[:show].tolist()]
    files = locate_images(indexes, wanted, scratch, roots)
    written = []
    for c, (rows, scores) in enumerate(zip(sel.rows, sel.scores)):
        data, captions = [], []
        for rank, (g, s) in enumerate(zip(rows[:show].tolist(), scores[:show].tolist()), start=1):
            e = entries[g]
            f = files.get((e.index, e.row))
            data.append(Path(f).read_bytes() if f else None)
            captions.append(f"#{rank} {s:.3f} {e.source}")
        written.append(str(write_sheet(folder, c + 1, categories[c], data, captions)))
    return written


def _shards(indexes: Sequence[ClipIndex], categories: list[str], sel: Selection, entries: dict[int, Entry],
            scratch: Path, roots: dict[str, str], opts: RetrieveOptions) -> Any:
    """Write each retrieved image once, labelled as ZUTIS would (``none``) or by its assigned category (``best``)."""
    from ..pipeline import BuildOptions, build

    label = zutis_labels(sel)
    order: list[int] = []
    seen: dict[int, list[tuple[str, int, float]]] = {}
    for c, (rows, scores) in enumerate(zip(sel.rows, sel.scores)):
        for rank, (g, s) in enumerate(zip(rows.tolist(), scores.tolist()), start=1):
            if g not in seen:
                order.append(g)
                seen[g] = []
            seen[g].append((categories[c], rank, round(float(s), 6)))
    files = locate_images(indexes, [entries[g] for g in order], scratch, roots)
    records = []
    for g in order:
        e = entries[g]
        meta = {"source": e.source, "key": e.key, "path": e.path, "wnid": e.wnid,
                "retrieved_by": [{"category": c, "rank": r, "score": s} for c, r, s in seen[g]]}
        records.append(make_record(e, files.get((e.index, e.row)), label[g], meta))
    notes = {"labels": "image-level: cls = label of the category that retrieved the image (0 = background)",
             "dedup": opts.dedup, "categories_from": opts.categories, "n": opts.n}
    source = RetrievedSource(f"retrieved-{Path(opts.categories).stem}", tuple(categories), tuple(records), notes)
    build_opts = BuildOptions(shard_size=opts.shard_size, workers=opts.workers, overwrite=opts.overwrite, progress=False)
    assert opts.shards is not None
    return build(source, opts.shards, ["train"], build_opts)
