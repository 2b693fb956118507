"""Build shards from a source: plan tasks per split, skip finished ones, run the rest, index.

The worker (``run_task``) loads each record through the source and writes one shard; the
executor runs workers; the index is written last, from the per-shard stats files.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Iterator, Sequence

from .errors import BuildError, InputError, SampleError
from .executors import ProgressFn, TaskResult, get_executor
from .plan import ShardTask, plan_tasks
from .progress import ProgressBar
from .shards.index import FORMAT_VERSION, make_index
from .shards.spec import SplitSpec
from .shards.writer import ShardStats, ShardWriter
from .sources.base import Record, Sample, Source
from .storage import Output, cleanup_staging


@dataclass(frozen=True)
class BuildOptions:
    shard_size: int = 1000
    shard_bytes: int = 1 << 30
    workers: int = max(1, os.cpu_count() or 1)
    executor: str = "local"
    resume: bool = False
    overwrite: bool = False
    strict: bool = False
    progress: bool = True
    ray_address: str | None = None
    fsync: bool = False
    shared_fs: bool = False
    load_threads: int = 1  # >1: load records ahead on threads (helps sources that decode; costs ~30 µs a sample)

    def writer_config(self) -> dict[str, int]:
        return {"shard_size": self.shard_size, "shard_bytes": self.shard_bytes}


@dataclass
class SplitReport:
    split: str
    samples: int = 0
    shards: int = 0
    bytes: int = 0
    skipped_shards: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failed_tasks: list[str] = field(default_factory=list)
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


def _load(source: Source, rec: Record) -> Sample | SampleError:
    try:
        return source.load(rec)
    except SampleError as err:
        return err


def loaded(source: Source, records: Sequence[Record], threads: int = 1) -> Iterator[tuple[Record, Sample | SampleError]]:
    """``source.load`` over the records in order, a few ahead on threads: file reads, PIL and zlib
    release the GIL, so loading overlaps with hashing and writing the previous samples."""
    if threads <= 1 or len(records) < 2:
        for rec in records:
            yield rec, _load(source, rec)
        return
    with ThreadPoolExecutor(threads) as pool:
        window: deque[tuple[Record, Future[Sample | SampleError]]] = deque()
        it = iter(records)
        for rec in it:
            window.append((rec, pool.submit(_load, source, rec)))
            if len(window) >= 2 * threads:
                break
        for rec in it:
            head, fut = window.popleft()
            yield head, fut.result()
            window.append((rec, pool.submit(_load, source, rec)))
        while window:
            head, fut = window.popleft()
            yield head, fut.result()


def task_context(spec: SplitSpec, opts: BuildOptions) -> dict:
    """The settings a shard's bytes depend on, besides its records (part of its fingerprint)."""
    return {"format": FORMAT_VERSION, "spec": spec.to_json(), "writer": opts.writer_config()}


def run_task(source: Source, output: Output, opts: BuildOptions, task: ShardTask, progress: ProgressFn) -> ShardStats:
    """The worker: one task in, one shard (and its stats file) out."""
    spec = source.spec(task.split)
    writer = ShardWriter(output.local_dir(task.split), task.name, spec, opts.strict, opts.fsync, task.fingerprint)
    strict = opts.strict
    pending = 0
    try:
        for rec, sample in loaded(source, task.records, opts.load_threads):
            if isinstance(sample, SampleError):
                if strict:
                    raise sample
                writer.fail(rec.key, str(rec.data.get("path", "")), sample.reason, sample.detail)
            else:
                writer.write(rec.key, sample.image, sample.masks, sample.cls, sample.meta, sample.origin or rec.key)
            pending += 1
            if pending >= 32:
                progress(pending)
                pending = 0
        stats = writer.close()
    except BaseException:
        writer.abort()
        raise
    output.commit(task.split, stats)
    progress(pending)
    return stats


def build(source: Source, out: str | Path, splits: Sequence[str] | None = None,
          opts: BuildOptions = BuildOptions()) -> BuildReport:
    """Write every requested split of ``source`` as shards + index under ``out`` (a folder or URL)."""
    output = Output(str(out))
    chosen = list(splits) if splits else list(source.splits())
    unknown = sorted(set(chosen) - set(source.splits()))
    if unknown:
        raise InputError(f"{source.name} has no split(s) {unknown}; available: {list(source.splits())}")
    executor = get_executor(opts.executor)
    if opts.executor == "ray" and opts.ray_address and not output.remote and not opts.shared_fs:
        raise InputError(f"on a Ray cluster each node would write {out} on its own disk: give --out a URL "
                         "(s3://...) or pass --shared-fs if it is a shared file system mounted on every node")
    if opts.shard_size < 1 or opts.shard_bytes < 1 or opts.workers < 1:
        raise InputError("shard size, shard bytes and workers must be >= 1")
    output.prepare(chosen, opts.resume, opts.overwrite)
    extra = {"address": opts.ray_address} if opts.executor == "ray" else {}

    plans: dict[str, list[ShardTask]] = {}
    done: dict[str, dict[str, ShardStats]] = {}
    todo: list[ShardTask] = []
    for split in chosen:
        plans[split] = plan_tasks(split, source.records(split), opts.shard_size, opts.shard_bytes)
        done[split] = {}
        context = task_context(source.spec(split), opts)
        plans[split] = [replace(t, fingerprint=t.digest(context)) for t in plans[split]]
        for task in plans[split]:
            stats = output.finished(split, task.name) if opts.resume else None
            if stats is not None and stats.fingerprint != task.fingerprint:
                raise InputError(f"{out}/{split}/{task.name}.tar was built from other inputs or settings "
                                 "(records, members, class table or shard size changed); --resume only continues "
                                 "the same build: use --overwrite to rebuild")
            if stats is not None:
                done[split][task.name] = stats
            else:
                todo.append(task)
    total = sum(len(t.records) for t in todo)
    worker = partial(run_task, source, output, opts)
    with ProgressBar(total, f"{source.name}", opts.progress) as bar:
        results: list[TaskResult] = executor(worker, todo, opts.workers, bar.advance, **extra)
        seconds = bar.elapsed
    failed: dict[str, list[str]] = {s: [] for s in chosen}
    written = 0
    for task, res in zip(todo, results):
        if res.error is not None:
            failed[task.split].append(f"{task.name}: {res.error}")
        else:
            done[task.split][task.name] = res.value
            written += res.value.nsamples

    reports = []
    for split in chosen:
        rep = SplitReport(split, skipped_shards=len(plans[split]) - sum(1 for t in todo if t.split == split))
        stats = list(done[split].values())
        rep.samples = sum(s.nsamples for s in stats)
        rep.shards = sum(1 for s in stats if s.file)
        rep.bytes = sum(s.bytes for s in stats)
        for s in stats:
            for reason, n in s.failure_counts.items():
                rep.failures[reason] = rep.failures.get(reason, 0) + n
        rep.failed_tasks = failed[split]
        if not failed[split]:
            rep.index_path = output.write_index(split, make_index(source.spec(split), stats, opts.writer_config()))
        reports.append(rep)
    cleanup_staging(output)
    report = BuildReport(source.name, str(out), reports, round(seconds, 3), written)
    bad = [t for r in reports for t in r.failed_tasks]
    if bad:
        raise BuildError(f"{len(bad)} shard task(s) failed (rerun with --resume): {bad[0]}", report)
    return report
