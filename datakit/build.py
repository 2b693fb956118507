"""Build shards from a source: plan tasks per split, skip finished ones, run the rest, index.

The worker (``run_task``) loads each record through the source and writes one shard; the
executor runs workers; the index is written last, from the per-shard stats files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

from .errors import BuildError, InputError, SampleError
from .executors import ProgressFn, TaskResult, get_executor
from .plan import ShardTask, plan_tasks
from .progress import ProgressBar
from .shards.index import write_index, make_index
from .shards.writer import ShardStats, ShardWriter, read_stats
from .sources.base import Source


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


def run_task(source: Source, out: str, strict: bool, fsync: bool, task: ShardTask, progress: ProgressFn) -> ShardStats:
    """The worker: one task in, one shard (and its stats file) out."""
    directory = Path(out) / task.split
    spec = source.spec(task.split)
    writer = ShardWriter(directory, task.name, spec, strict, fsync)
    pending = 0
    try:
        for rec in task.records:
            try:
                sample = source.load(rec)
            except SampleError as err:
                if strict:
                    raise
                writer.fail(rec.key, str(rec.data.get("path", "")), err.reason, err.detail)
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
    progress(pending)
    return stats


def _prepare_out(out: Path, splits: Sequence[str], opts: BuildOptions) -> None:
    existing = [s for s in splits if (out / s).exists() and any((out / s).iterdir())]
    if existing and not (opts.resume or opts.overwrite):
        raise InputError(f"{out} already holds {', '.join(existing)}; pass --resume to continue or --overwrite to rebuild")
    if opts.overwrite:
        for s in existing:
            shutil.rmtree(out / s)
    for s in splits:
        (out / s).mkdir(parents=True, exist_ok=True)
        for stale in (out / s).glob("*.tmp"):
            stale.unlink()  # torn writes of a killed run


def build(source: Source, out: str | Path, splits: Sequence[str] | None = None,
          opts: BuildOptions = BuildOptions()) -> BuildReport:
    """Write every requested split of ``source`` as shards + index under ``out``."""
    out = Path(out)
    chosen = list(splits) if splits else list(source.splits())
    unknown = sorted(set(chosen) - set(source.splits()))
    if unknown:
        raise InputError(f"{source.name} has no split(s) {unknown}; available: {list(source.splits())}")
    _prepare_out(out, chosen, opts)
    executor = get_executor(opts.executor)
    extra = {"address": opts.ray_address} if opts.executor == "ray" else {}

    plans: dict[str, list[ShardTask]] = {}
    done: dict[str, dict[str, ShardStats]] = {}
    todo: list[ShardTask] = []
    for split in chosen:
        plans[split] = plan_tasks(split, source.records(split), opts.shard_size, opts.shard_bytes)
        done[split] = {}
        for task in plans[split]:
            stats = read_stats(out / split, task.name) if opts.resume else None
            if stats is not None:
                done[split][task.name] = stats
            else:
                todo.append(task)
    total = sum(len(t.records) for t in todo)
    worker = partial(run_task, source, str(out), opts.strict, opts.fsync)
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
            index = make_index(source.spec(split), stats, opts.writer_config())
            rep.index_path = str(write_index(out / split, index))
        reports.append(rep)
    report = BuildReport(source.name, str(out), reports, round(seconds, 3), written)
    bad = [t for r in reports for t in r.failed_tasks]
    if bad:
        raise BuildError(f"{len(bad)} shard task(s) failed (rerun with --resume): {bad[0]}")
    return report
