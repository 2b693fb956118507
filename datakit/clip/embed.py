"""``datakit index``: embed image inputs into a resumable CLIP index, and merge rank outputs.

Each rank (``RANK``/``WORLD_SIZE`` as set by torchrun) embeds the parts whose index is equal to
its rank modulo the world size, skipping parts already done. Whoever finishes last with every
part present writes the table and manifest; ``merge_indexes`` gathers parts written elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_write_json, copy_atomic
from ..progress import ProgressBar
from . import store
from .images import InputSpec, PartTask, plan_parts
from .loader import make_decoder, make_loader, split_transform
from .model import LoadedModel, ModelSpec, encode_images, load_model

Notify = Callable[[str], None]


def _stderr(msg: str) -> None:
    """Default notifier: one prefixed line on stderr."""
    print(f"datakit: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class IndexOptions:
    """How to embed: model, device, batching, part size, and this process's rank."""

    model: ModelSpec = ModelSpec()
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 0  # 0: 256 on GPU, 32 on CPU
    workers: int = -1  # -1: min(16, CPU count - 1); 0: decode in the main process
    part_size: int = 10_000
    rank: int | None = None  # None: from $RANK (torchrun), else 0
    world_size: int | None = None  # None: from $WORLD_SIZE, else 1
    overwrite: bool = False
    progress: bool = True
    decode: str = "pil"  # pil (as ZUTIS) | pil-draft | device (faster, slightly different pixels: see loader.py)

    def ranks(self) -> tuple[int, int]:
        """(rank, world size), from the options or torchrun's environment."""
        rank = int(os.environ.get("RANK", "0")) if self.rank is None else self.rank
        world = int(os.environ.get("WORLD_SIZE", "1")) if self.world_size is None else self.world_size
        if world < 1 or not 0 <= rank < world:
            raise InputError(f"rank {rank} is not within world size {world}")
        return rank, world


@dataclass
class IndexReport:
    """What one run did; ``manifest`` is set when the index is complete."""

    out: str
    parts_total: int
    parts_skipped: int = 0
    parts_written: int = 0
    parts_other_ranks: int = 0
    images: int = 0
    failed: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0  # until the first batch was ready (loader start-up, first decode)
    startup_images: int = 0  # images in that first batch
    device: str = ""
    precision: str = ""
    rank: int = 0
    world_size: int = 1
    manifest: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_rate(self) -> float:
        """images/s once the first batch was in: what a long run sustains."""
        span = self.seconds - self.startup_seconds
        return (self.images - self.startup_images) / span if span > 0 and self.images > self.startup_images else self.rate


def _clear(out: Path) -> None:
    """Remove an index's own files only (never anything else in the folder)."""
    for name in (store.PLAN, store.MANIFEST, store.TABLE):
        (out / name).unlink(missing_ok=True)
    if (out / store.PARTS).is_dir():
        shutil.rmtree(out / store.PARTS)


def prepare_plan(out: Path, plan: dict[str, Any], overwrite: bool, world: int) -> None:
    """Write the plan, or check that the one already there is for the same model and input."""
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        if world > 1:
            raise InputError("--overwrite cannot be used with several ranks (they would delete each other's parts)")
        _clear(out)
    existing = store.read_json_if_present(out / store.PLAN)
    if existing is not None:
        store.check_plan(existing, plan, out)
    else:
        atomic_write_json(out / store.PLAN, plan, fsync=True)


def _sources(inputs: Sequence[InputSpec]) -> list[dict[str, Any]]:
    """The plan's record of the inputs."""
    return [{"name": i.name, "kind": i.kind, "root": i.root} for i in inputs]


class _PartBuffer:
    """Embeddings and rows of one part as its chunks arrive (from several loader workers, in any order)."""

    def __init__(self) -> None:
        self.chunks: dict[int, tuple[np.ndarray | None, dict[str, Any]]] = {}
        self.count: int | None = None  # number of chunks, known once the last one is in

    def add(self, item: dict[str, Any], emb: np.ndarray | None) -> bool:
        """Keep one chunk; True when the part is complete."""
        self.chunks[item["chunk"]] = (emb, item)
        if item["last"]:
            self.count = item["chunk"] + 1
        return self.count is not None and len(self.chunks) == self.count

    def rows(self, part: int, source: str, dim: int) -> tuple[store.PartRows, list[dict[str, str]]]:
        """The part's rows and failures, chunks in order."""
        ordered = [self.chunks[c] for c in range(self.count or 0)]
        arrays = [e for e, _ in ordered if e is not None]
        emb = np.concatenate(arrays) if arrays else np.zeros((0, dim), np.float16)
        keys = [k for _, it in ordered for k in it["keys"]]
        rows = store.PartRows(part, emb, keys, [source] * len(keys), [p for _, it in ordered for p in it["paths"]],
                              [w for _, it in ordered for w in it["wnids"]])
        return rows, [f for _, it in ordered for f in it["failures"]]


def _device_decoding(decoder: Any, transform: Any, device: str) -> Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]] | None:
    """For ``--decode device``: a function turning a batch of JPEG bytes into pixels on the device (rows that fail
    move to the batch's failures); None for the other decoders."""
    if decoder.stacks:
        return None
    from .device_decode import check_decoder, decode_batch, device_geometry, drop_failed

    geometry = device_geometry(transform)
    check_decoder(device)

    def run(item: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        pixels, bad = decode_batch(item["images"], transform, geometry, device, item["paths"])
        return pixels, drop_failed(item, bad)

    return run


def _embed_parts(loaded: LoadedModel, tasks: list[PartTask], out: Path, plan: dict[str, Any],
                 opts: IndexOptions, report: IndexReport) -> None:
    """Run the loader over this rank's parts; write each part as soon as its last batch is embedded."""
    batch = opts.batch_size or (256 if loaded.device.startswith("cuda") else 32)
    workers = max(1, min(16, (os.cpu_count() or 2) - 1)) if opts.workers < 0 else opts.workers
    transform, norm = split_transform(loaded.transform)  # uint8 out of the workers, normalised on the device
    decoder = make_decoder(opts.decode, transform, loaded.identity["preprocess"])
    on_device = _device_decoding(decoder, transform, loaded.device)
    loader = make_loader(tasks, decoder, batch, workers, pin=loaded.device.startswith("cuda"))
    source_of = {t.index: t.source for t in tasks}
    buffers: dict[int, _PartBuffer] = {}
    with ProgressBar(sum(t.size for t in tasks), f"index rank {report.rank}", opts.progress) as bar:
        for item in loader:
            if not report.startup_seconds:
                report.startup_seconds, report.startup_images = round(bar.elapsed, 3), len(item["keys"])
            bar.advance(len(item["keys"]) + len(item["failures"]))
            images = item["images"]
            if on_device is not None and images is not None:
                images, item = on_device(item)
            part = item["part"]
            buf = buffers.setdefault(part, _PartBuffer())
            emb = encode_images(loaded, images, norm) if images is not None else None
            if buf.add(item, emb):
                del buffers[part]
                rows, failures = buf.rows(part, source_of[part], loaded.dim)
                store.write_part(out, rows, plan, failures, {"precision": loaded.precision, "device": loaded.device})
                report.parts_written += 1
                report.images += len(rows.keys)
                report.failed += len(failures)
        report.seconds = round(bar.elapsed, 3)


def build_index(inputs: Sequence[InputSpec], out: str | Path, opts: IndexOptions = IndexOptions(),
                notify: Notify = _stderr, loaded: LoadedModel | None = None) -> IndexReport:
    """Embed every part of ``inputs`` owned by this rank into ``out``; finished parts are skipped.
    ``loaded``: a model already loaded for ``opts.model`` (a Ray actor loads it once)."""
    out = Path(out)
    if not inputs:
        raise InputError("no input to index")
    rank, world = opts.ranks()
    if loaded is None:
        loaded = load_model(opts.model, opts.device, opts.precision)
    for note in loaded.notes:
        notify(note)
    if loaded.device == "cpu":
        notify("no GPU in use: embedding on CPU in fp32 works but is slow (ViT-L-14-336 runs at about 0.5 images/s per core)")
    tasks = plan_parts(inputs, opts.part_size)
    plan = store.make_plan(loaded.identity, _sources(inputs), [t.unit for t in tasks])
    prepare_plan(out, plan, opts.overwrite, world)
    done = store.done_parts(out, plan)
    report = IndexReport(str(out), len(tasks), device=loaded.device, precision=loaded.precision,
                         rank=rank, world_size=world, notes=list(loaded.notes))
    mine = [t for t in tasks if t.index % world == rank]
    todo = [t for t in mine if t.index not in done]
    report.parts_skipped = len(mine) - len(todo)
    report.parts_other_ranks = len(tasks) - len(mine)
    if todo:
        _embed_parts(loaded, todo, out, plan, opts, report)
    report.manifest = store.finalize(out, plan)
    if report.manifest is None:
        missing = len(tasks) - len(store.done_parts(out, plan))
        report.notes.append(f"{missing} part(s) of other ranks are not done yet; the last rank to finish "
                            f"(or `datakit index merge {out}`) writes the manifest")
    return report


def merge_indexes(dirs: Sequence[str | Path], out: str | Path) -> IndexReport:
    """Gather the parts that ranks wrote in several folders (or one shared folder) into one index."""
    out = Path(out)
    folders = [Path(d) for d in dirs]
    if not folders:
        raise InputError("merge needs at least one index folder")
    plans = []
    for d in folders:
        plan = store.read_json_if_present(d / store.PLAN)
        if plan is None:
            raise InputError(f"{d}: no {store.PLAN}; not an index folder written by `datakit index`")
        plans.append(plan)
    base = plans[0]
    for d, plan in zip(folders[1:], plans[1:]):
        store.check_plan(plan, base, d)
    prepare_plan(out, base, False, 1)
    (out / store.PARTS).mkdir(parents=True, exist_ok=True)
    report = IndexReport(str(out), len(base["parts"]))
    t0 = time.perf_counter()
    missing = []
    for i in range(len(base["parts"])):
        name = store.part_name(i)
        if store.read_marker(out / store.PARTS, i) is not None:
            store.check_marker(store.read_marker(out / store.PARTS, i) or {}, base, str(out / store.PARTS / name))
            report.parts_skipped += 1
            continue
        found = next((d for d in folders if store.read_marker(d / store.PARTS, i) is not None), None)
        if found is None:
            missing.append(name)
            continue
        marker = store.read_marker(found / store.PARTS, i) or {}
        store.check_marker(marker, base, str(found / store.PARTS / name))
        for ext in (".npy", ".parquet", ".json"):  # the marker last: it is what makes the part count
            copy_atomic(found / store.PARTS / f"{name}{ext}", out / store.PARTS / f"{name}{ext}")
        report.parts_written += 1
        report.images += int(marker["rows"])
    if missing:
        raise InputError(f"{len(missing)} of {len(base['parts'])} parts are missing from every folder "
                         f"(first: {missing[0]}); rerun the rank(s) that own them")
    report.manifest = store.finalize(out, base)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
