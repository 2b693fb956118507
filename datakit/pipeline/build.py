"""Build shards from a source: plan each split's tasks as its records stream in, skip finished shards,
run the rest on an executor, then publish each split's index and card.

The worker (``write_shard``) loads each record through the source and writes one shard; a record
whose payload is a ``Problem``, or whose load raises ``SampleError``, becomes a failure of that
reason (fatal only with ``strict``). Everything reaches the output through ``io.Output``, and a
shard counts as finished only through its sealed done marker (``jobs.parts``).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Iterable, Iterator, Sequence

from ..errors import BuildError, InputError, SampleError
from ..io.output import LocalOutput, Output, open_output
from ..jobs import ExecutorOptions, ProgressFn, TaskResult, make_executor
from ..jobs.parts import PartStore, canonical
from ..progress import ProgressBar
from ..shards.card import CARD_NAME, dataset_card
from ..shards.index import FORMAT_VERSION, INDEX_NAME, index_bytes, index_content_id, make_index
from ..shards.spec import SplitSpec
from ..shards.writer import ShardStats, ShardWriter
from ..sources.base import Listing, Record, Sample, Source, extra_files, listing_of, roots_of
from ..sources.params import split_alias
from .fingerprint import (HASH_THREADS, RESUME_MODES, Roots, bytes_hash, describe_change, fingerprint, hash_inputs,
                          record_entries)
from .plan import PlanOptions, ShardTask, plan_tasks
from .safety import MARKER_SUFFIX, check_overlap, prepare, stale_shards

@dataclass(frozen=True)
class BuildOptions:
    """How to build. ``resume``: "" (refuse an existing output), "stat" (keep shards whose inputs have
    the same size and mtime) or "content" (the same content hash); ``True`` means "stat"."""

    shard_size: int = 1000
    shard_bytes: int = 1 << 30
    workers: int = max(1, os.cpu_count() or 1)
    executor: str = "local"
    ray_address: str | None = None
    resume: bool | str = ""
    overwrite: bool = False
    strict: bool = False
    progress: bool = True
    fsync: bool = False
    shared_fs: bool = False
    load_threads: int = 1  # >1: load records ahead on threads (helps sources that decode; costs ~30 µs a sample)
    order: str = "permuted"
    seed: int = 0

    @property
    def resume_mode(self) -> str:
        return "stat" if self.resume is True else (self.resume or "")

    def plan(self) -> PlanOptions:
        return PlanOptions(self.shard_size, self.shard_bytes, self.order, self.seed)

    def writer_config(self) -> dict[str, Any]:
        """The settings a shard's bytes depend on (with its records and the split spec); the order
        settings are also the index's ``record_order``."""
        return {"shard_size": self.shard_size, "shard_bytes": self.shard_bytes, "record_order": self.plan().record_order()}

    def check(self) -> None:
        self.plan().check()
        if self.resume_mode not in ("", *RESUME_MODES):
            raise InputError(f"resume must be one of {list(RESUME_MODES)}, not {self.resume!r}")
        if self.resume_mode and self.overwrite:
            raise InputError("--resume continues a build and --overwrite replaces it: choose one")


@dataclass
class SplitReport:
    split: str
    samples: int = 0
    shards: int = 0
    bytes: int = 0
    skipped_shards: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failed_tasks: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)  # "<shard>: why" for finished shards whose inputs changed
    index_path: str = ""


@dataclass
class BuildReport:
    dataset: str
    out: str
    splits: list[SplitReport]
    seconds: float = 0.0
    samples_written: int = 0

    @property
    def rate(self) -> float:
        return self.samples_written / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- the worker

def _load(source: Source, rec: Record[Any]) -> Sample | SampleError:
    try:
        return source.load(rec)
    except SampleError as err:
        return err


def loaded(source: Source, records: Sequence[Record[Any]],
           threads: int = 1) -> Iterator[tuple[Record[Any], Sample | SampleError]]:
    """``source.load`` over the records in order (Problem records are not loaded), a few ahead on
    threads: file reads, PIL and zlib release the GIL, so loading overlaps with hashing and writing."""
    def one(rec: Record[Any]) -> Sample | SampleError:
        problem = rec.problem
        return SampleError(problem.reason, problem.detail) if problem else _load(source, rec)

    if threads <= 1 or len(records) < 2:
        for rec in records:
            yield rec, one(rec)
        return
    with ThreadPoolExecutor(threads) as pool:
        window: deque[tuple[Record[Any], Future[Sample | SampleError]]] = deque()
        for rec in records:
            window.append((rec, pool.submit(one, rec)))
            if len(window) > 2 * threads:
                head, fut = window.popleft()
                yield head, fut.result()
        while window:
            head, fut = window.popleft()
            yield head, fut.result()


@dataclass(frozen=True)
class ShardJob:
    """What every shard task of a build shares (it travels to each worker once)."""

    source: Source
    output: Output
    specs: dict[str, SplitSpec]
    contexts: dict[str, bytes]
    roots: Roots
    strict: bool
    fsync: bool
    load_threads: int


def loaded_hash(rec: Record[Any], sample: Sample, hashes: dict[str, str]) -> None:
    """Take the content hash of the record's image file from the bytes just loaded when they are that
    whole file (same path, same size), so the done marker need not read it again."""
    image = sample.image
    if isinstance(image, bytes) and sample.origin:
        for f in rec.inputs:
            if f.path == sample.origin and f.size == len(image) and not f.digest:
                hashes[f.path] = bytes_hash(image)


def done_marker(job: ShardJob, task: ShardTask, stats: ShardStats, known: dict[str, str]) -> dict[str, Any]:
    """The shard's done marker: its stats, files, and both fingerprints with per-record entries (the
    inputs were just read, so hashing them is cheap, and either resume mode can trust the shard later)."""
    entries = record_entries(task.records, job.roots, hash_inputs(task.records, known=known))
    context = job.contexts[task.split]
    files = {stats.file: stats.bytes} if stats.file else {}
    prints = {mode: fingerprint(context, entries, mode) for mode in RESUME_MODES}
    return {**stats.to_json(), "fingerprints": prints, "files": files, "records": [list(e) for e in entries]}


def write_shard(job: ShardJob, task: ShardTask, progress: ProgressFn) -> ShardStats:
    """The worker: one task in, one shard and its done marker out."""
    spec = job.specs[task.split]
    writer = ShardWriter(job.output.staging(task.split), task.name, spec, job.strict, job.fsync)
    pending = 0
    known: dict[str, str] = {}
    try:
        for rec, sample in loaded(job.source, task.records, job.load_threads):
            if isinstance(sample, SampleError):
                if job.strict:
                    raise sample
                origin = rec.problem.path if rec.problem else (rec.inputs[0].path if rec.inputs else "")
                writer.fail(rec.key, origin, sample.reason, sample.detail)
            else:
                writer.write(rec.key, sample.image, sample.masks, sample.cls, sample.meta, sample.origin or rec.key)
                loaded_hash(rec, sample, known)
            pending += 1
            if pending >= 32:
                progress(pending)
                pending = 0
        stats = writer.close()
    except BaseException:
        writer.abort()
        raise
    marker = done_marker(job, task, stats, known)
    PartStore(job.output, task.split, MARKER_SUFFIX).commit(task.name, list(marker["files"]), marker, job.fsync)
    progress(pending)
    return stats


# ---------------------------------------------------------------- planning and resume

@dataclass
class SplitPlan:
    """What planning a split found: finished shards, the names of every planned shard, redone shards."""

    split: str
    listing: Listing
    done: dict[str, ShardStats] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    redone: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def context_bytes(spec: SplitSpec, opts: BuildOptions) -> bytes:
    """The part of every shard's fingerprint that is not its records."""
    return canonical({"format": FORMAT_VERSION, "spec": spec.content_json(), "writer": opts.writer_config()})


def stamped(tasks: Iterable[ShardTask], roots: Roots, context: bytes, mode: str) -> Iterator[ShardTask]:
    """Tasks with their fingerprint in ``mode`` (content mode hashes the inputs on threads here)."""
    for task in tasks:
        hashes = hash_inputs(task.records, HASH_THREADS) if mode == "content" else None
        entries = record_entries(task.records, roots, hashes)
        yield replace(task, fingerprint=fingerprint(context, entries, mode), entries=entries)


def unfinished(plan: SplitPlan, tasks: Iterable[ShardTask], store: PartStore | None, grow: ProgressFn,
               mode: str) -> Iterator[ShardTask]:
    """The tasks still to do; finished ones (same fingerprint, intact marker and files) go to ``plan.done``."""
    if store is None:
        for task in tasks:
            plan.names.add(task.name)
            plan.todo.append(task.name)
            grow(task.size)
            yield task
        return
    pending: dict[str, ShardTask] = {}

    def names() -> Iterator[str]:
        for task in tasks:
            pending[task.name] = task
            yield task.name

    for name, marker in store.scan(names()):
        task = pending.pop(name)
        plan.names.add(name)
        if marker is not None and dict(marker.get("fingerprints", {})).get(mode) == task.fingerprint:
            plan.done[name] = ShardStats.from_json(marker)
            continue
        if marker is not None:
            plan.redone.append(f"{name}: {describe_change(marker.get('records'), task.entries, mode)}")
        plan.todo.append(name)
        grow(task.size)
        yield task


# ---------------------------------------------------------------- the build

def _choose(source: Source, splits: Sequence[str] | None) -> list[str]:
    available = list(source.splits())
    if not splits:
        return available
    chosen = []
    for split in splits:
        split = split_alias(split, available)
        if split not in available:
            raise InputError(f"{source.name} has no split {split!r}; available: {available}")
        chosen.append(split)
    return chosen


def _check(output: Output, source: Source, opts: BuildOptions) -> None:
    opts.check()
    check_overlap(output, roots_of(source))
    if opts.executor == "ray" and opts.ray_address and isinstance(output, LocalOutput) and not opts.shared_fs:
        raise InputError(f"on a Ray cluster each node would write {output.url} on its own disk: give --out a URL "
                         "(s3://...) or pass --shared-fs if it is a shared file system mounted on every node")


def build(source: Source, out: str | os.PathLike[str], splits: Sequence[str] | None = None,
          opts: BuildOptions = BuildOptions()) -> BuildReport:
    """Write every requested split of ``source`` as shards + index under ``out`` (a folder or URL)."""
    output = open_output(str(out))
    chosen = _choose(source, splits)
    _check(output, source, opts)
    extras = {s: extra_files(source, s) for s in chosen}
    prepare(output, chosen, bool(opts.resume_mode), opts.overwrite, {n for e in extras.values() for n in e})
    executor = make_executor(ExecutorOptions(opts.executor, opts.workers, opts.ray_address))
    specs = {s: source.spec(s) for s in chosen}
    contexts = {s: context_bytes(specs[s], opts) for s in chosen}
    roots = Roots.of(roots_of(source))
    job = ShardJob(source, output, specs, contexts, roots, opts.strict, opts.fsync, opts.load_threads)
    mode = opts.resume_mode or "stat"
    plans = {s: SplitPlan(s, listing_of(source, s)) for s in chosen}
    with ProgressBar(0, source.name, opts.progress) as bar:
        def grow(n: int) -> None:
            bar.set_total(bar.total + n)

        def todo() -> Iterator[ShardTask]:
            for s in chosen:
                store = PartStore(output, s, MARKER_SUFFIX) if opts.resume_mode else None
                tasks = plan_tasks(s, plans[s].listing.records, opts.plan())
                if store is not None:  # a fresh build needs no fingerprint here: the worker puts them in the marker
                    tasks = stamped(tasks, roots, contexts[s], mode)
                yield from unfinished(plans[s], tasks, store, grow, mode)

        results = executor.run(partial(write_shard, job), todo(), bar.advance)
        seconds = bar.elapsed
    report = _finish(output, source, opts, plans, results, extras)
    report.seconds = round(seconds, 3)
    output.cleanup()
    bad = [t for r in report.splits for t in r.failed_tasks]
    if bad:
        raise BuildError(f"{len(bad)} shard task(s) failed (rerun with --resume): {bad[0]}", report)
    return report


def _finish(output: Output, source: Source, opts: BuildOptions, plans: dict[str, SplitPlan],
            results: list[TaskResult], extras: dict[str, dict[str, bytes]]) -> BuildReport:
    """Match results to their tasks (in order), then finish every split."""
    names = [(s, n) for s, p in plans.items() for n in p.todo]
    report = BuildReport(source.name, output.url, [])
    for (split, name), res in zip(names, results):
        if res.ok:
            plans[split].done[name] = res.value
            report.samples_written += res.value.nsamples
        else:
            plans[split].failed.append(f"{name}: {res.error}")
    for split, plan in plans.items():
        report.splits.append(_finish_split(output, source, opts, plan, extras[split]))
    return report


def _finish_split(output: Output, source: Source, opts: BuildOptions, plan: SplitPlan,
                  extras: dict[str, bytes]) -> SplitReport:
    split = plan.split
    stats = list(plan.done.values())
    rep = SplitReport(split, redone=plan.redone, failed_tasks=plan.failed)
    rep.skipped_shards = len(plan.names) - len(plan.todo)
    rep.samples = sum(s.nsamples for s in stats)
    rep.shards = sum(1 for s in stats if s.file)
    rep.bytes = sum(s.bytes for s in stats)
    for s in stats:
        for reason, n in s.failure_counts.items():
            rep.failures[reason] = rep.failures.get(reason, 0) + n
    if rep.failed_tasks:
        return rep
    for name in stale_shards(output.names(split), split, plan.names):
        output.remove(split, name)
    for name, data in sorted(extras.items()):
        output.write_bytes(split, name, data, opts.fsync)
    spec = source.spec(split)
    index = make_index(spec, stats, opts.writer_config(), plan.listing.facts, extras)
    output.write_bytes(split, CARD_NAME, dataset_card(spec, index_content_id(index)), opts.fsync)
    rep.index_path = output.write_bytes(split, INDEX_NAME, index_bytes(index), opts.fsync)
    return rep
