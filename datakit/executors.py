"""Run independent shard tasks: one function per backend, all with the same signature.

``fn(task, progress)`` does one task and returns a picklable result; ``progress(n)`` reports
``n`` more samples done. A task that raises a DatakitError or OSError becomes a failed
TaskResult (the build reports it and ``--resume`` redoes it); any other exception is a bug
and propagates.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
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


def _queue_progress(q: Any, n: int) -> None:
    q.put(n)


def _pool_entry(fn: TaskFn, task: Any, index: int, q: Any) -> TaskResult:
    return _run_one(fn, task, index, partial(_queue_progress, q))


def local_executor(fn: TaskFn, tasks: Sequence[Any], workers: int, progress: ProgressFn) -> list[TaskResult]:
    """A process pool (inline when ``workers`` is 1); results come back in task order."""
    if workers <= 1 or len(tasks) <= 1:
        return [_run_one(fn, t, i, progress) for i, t in enumerate(tasks)]
    ctx = mp.get_context("spawn")
    results: list[TaskResult | None] = [None] * len(tasks)
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        q = manager.Queue()
        pending: set[Future[TaskResult]] = {pool.submit(_pool_entry, fn, t, i, q) for i, t in enumerate(tasks)}
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, progress)
            for fut in finished:
                res = fut.result()
                results[res.index] = res
        _drain(q, progress)
    return [r for r in results if r is not None]


def _drain(q: Any, progress: ProgressFn) -> None:
    while True:
        try:
            progress(q.get_nowait())
        except queue.Empty:
            return


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
