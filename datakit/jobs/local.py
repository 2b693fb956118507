"""The local executor: a process pool (inline with one worker), a bounded window of tasks in flight.

Tasks may come from a generator: only ``2 x workers`` are submitted at a time, so a plan of
millions of records never sits in the pool's queues. Worker processes report sample counts through
a queue; a worker that dies (killed, out of memory) fails its task, which ``--resume`` redoes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .tasks import ErrorKind, ProgressFn, TaskFn, TaskResult, run_one

_QUEUE: Any = None  # set in each pool process by _init_worker; carries only sample counts
_FN: TaskFn | None = None  # the task function of this worker process (made once by a per-worker factory)


def _init_worker(q: Any, fn: Callable[..., Any], per_worker: bool) -> None:
    global _QUEUE, _FN
    _QUEUE = q
    _FN = fn() if per_worker else fn


def _report(n: int) -> None:
    if n:
        _QUEUE.put(n)


def _pool_entry(task: Any, index: int) -> TaskResult:
    assert _FN is not None
    return run_one(_FN, task, index, _report)


def start_method() -> str:
    """fork where the OS has it (fast start, nothing re-imported); spawn elsewhere. DATAKIT_MP_START overrides."""
    wanted = os.environ.get("DATAKIT_MP_START")
    if wanted:
        return wanted
    return "fork" if "fork" in mp.get_all_start_methods() and sys.platform == "linux" else "spawn"


@dataclass(frozen=True)
class LocalExecutor:
    workers: int = 1

    def run(self, fn: Callable[..., Any], tasks: Iterable[Any], progress: ProgressFn,
            per_worker: bool = False) -> list[TaskResult]:
        if self.workers <= 1:
            task_fn = fn() if per_worker else fn
            return [run_one(task_fn, t, i, progress) for i, t in enumerate(tasks)]
        return self._pool(fn, iter(enumerate(tasks)), progress, per_worker)

    def _pool(self, fn: Callable[..., Any], tasks: Iterator[tuple[int, Any]], progress: ProgressFn,
              per_worker: bool) -> list[TaskResult]:
        ctx = mp.get_context(start_method())
        q = ctx.SimpleQueue()
        results: dict[int, TaskResult] = {}
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker, initargs=(q, fn, per_worker))
        where: dict[Future[TaskResult], int] = {}
        try:
            self._submit(pool, tasks, where)
            while where:
                finished, _ = wait(set(where), timeout=0.1, return_when=FIRST_COMPLETED)
                _drain(q, progress)
                for fut in finished:
                    index = where.pop(fut)
                    try:
                        results[index] = fut.result()
                    except BrokenProcessPool as err:  # a worker died: its task is redone on --resume
                        results[index] = TaskResult(index, error=f"worker process died ({err})", kind=ErrorKind.WORKER_DIED)
                if finished:
                    self._submit(pool, tasks, where)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # a bug in a task stops the rest instead of running them all
        _drain(q, progress)
        return [results[i] for i in sorted(results)]

    def _submit(self, pool: ProcessPoolExecutor, tasks: Iterator[tuple[int, Any]], where: dict[Future[TaskResult], int]) -> None:
        """Top the window up to ``2 x workers`` tasks in flight (none once the pool is broken)."""
        while len(where) < 2 * self.workers:
            try:
                index, task = next(tasks)
            except StopIteration:
                return
            try:
                where[pool.submit(_pool_entry, task, index)] = index
            except BrokenProcessPool as err:
                fut: Future[TaskResult] = Future()
                fut.set_exception(err)
                where[fut] = index


def _drain(q: Any, progress: ProgressFn) -> None:
    progress(0)  # a tick: lets a batch-log progress line print while a long task runs
    while not q.empty():
        progress(q.get())
