"""Run independent shard tasks: one function per backend, all with the same signature.

``fn(task, progress)`` does one task and returns a picklable result; ``progress(n)`` reports
``n`` more samples done. A task that raises a DatakitError or OSError becomes a failed
TaskResult (the build reports it and ``--resume`` redoes it); any other exception is a bug
and propagates.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import DatakitError, InputError

ProgressFn = Callable[[int], None]
TaskFn = Callable[[Any, ProgressFn], Any]


@dataclass
class TaskResult:
    index: int
    value: Any = None
    error: str | None = None


def _run_one(fn: TaskFn, task: Any, index: int, progress: ProgressFn) -> TaskResult:
    try:
        return TaskResult(index, fn(task, progress))
    except (DatakitError, OSError) as err:
        return TaskResult(index, error=f"{type(err).__name__}: {err}")


_PROGRESS_QUEUE: Any = None  # set in each pool process by _init_worker; only carries sample counts


def _init_worker(q: Any) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = q


def _report(n: int) -> None:
    if n:
        _PROGRESS_QUEUE.put(n)


def _pool_entry(fn: TaskFn, task: Any, index: int) -> TaskResult:
    return _run_one(fn, task, index, _report)


def start_method() -> str:
    """fork where the OS has it (fast start, nothing re-imported); spawn elsewhere. DATAKIT_MP_START overrides."""
    wanted = os.environ.get("DATAKIT_MP_START")
    if wanted:
        return wanted
    return "fork" if "fork" in mp.get_all_start_methods() and sys.platform == "linux" else "spawn"


def local_executor(fn: TaskFn, tasks: Sequence[Any], workers: int, progress: ProgressFn) -> list[TaskResult]:
    """A process pool (inline when ``workers`` is 1); results come back in task order."""
    if workers <= 1 or len(tasks) <= 1:
        return [_run_one(fn, t, i, progress) for i, t in enumerate(tasks)]
    ctx = mp.get_context(start_method())
    q = ctx.SimpleQueue()
    results: list[TaskResult | None] = [None] * len(tasks)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker, initargs=(q,))
    try:
        where = {pool.submit(_pool_entry, fn, t, i): i for i, t in enumerate(tasks)}
        pending: set[Future[TaskResult]] = set(where)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            _drain(q, progress)
            for fut in finished:
                try:
                    res = fut.result()
                except BrokenProcessPool as err:  # a worker died (killed, out of memory): its tasks are redone on --resume
                    res = TaskResult(where[fut], error=f"worker process died ({err})")
                results[res.index] = res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a bug in a task stops the rest instead of running them all
    _drain(q, progress)
    return [r for r in results if r is not None]


def _drain(q: Any, progress: ProgressFn) -> None:
    progress(0)  # a tick: lets a batch-log progress line print while a long task runs
    while not q.empty():
        progress(q.get())


def ray_executor(fn: TaskFn, tasks: Sequence[Any], workers: int, progress: ProgressFn,
                 address: str | None = None, retries: int = 2) -> list[TaskResult]:
    """The same tasks as Ray remote functions (retried by Ray on worker death)."""
    from .ray_backend import run_on_ray

    return run_on_ray(fn, tasks, workers, progress, address=address, retries=retries)


EXECUTORS: dict[str, Callable[..., list[TaskResult]]] = {"local": local_executor, "ray": ray_executor}


def get_executor(name: str) -> Callable[..., list[TaskResult]]:
    try:
        return EXECUTORS[name]
    except KeyError:
        raise InputError(f"unknown executor {name!r}; choose from {sorted(EXECUTORS)}") from None
