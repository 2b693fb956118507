"""Run shard tasks as Ray remote functions: the same tasks and worker as the local pool.

Ray retries a task whose worker process dies (``max_retries``); the task rewrites its shard from
scratch, and its done marker is written last, so a retry cannot leave a half shard behind.
Progress travels through a Ray queue actor as sample counts.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from .errors import InputError
from .executors import ProgressFn, TaskFn, TaskResult, _run_one


def _ray_entry(fn: TaskFn, task: Any, index: int, q: Any) -> TaskResult:
    """Runs one task in a Ray worker; progress goes to the queue actor at most every half second."""
    pending = [0, time.monotonic()]

    def report(n: int) -> None:
        pending[0] += n
        if pending[0] and time.monotonic() - pending[1] > 0.5:
            q.put(pending[0])
            pending[:] = [0, time.monotonic()]

    result = _run_one(fn, task, index, report)
    if pending[0]:
        q.put(pending[0])
    return result


def _drain(q: Any, progress: ProgressFn) -> None:
    while not q.empty():
        progress(q.get_nowait())


def run_on_ray(fn: TaskFn, tasks: Sequence[Any], workers: int, progress: ProgressFn,
               address: str | None = None, retries: int = 2) -> list[TaskResult]:
    """Submit every task, gather results in task order; starts a local Ray unless one is running."""
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'datakit[ray]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = max(1, workers)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise InputError(f"cannot start or reach Ray{' at ' + address if address else ''}: {err}") from None
        started = True
    try:
        q = Queue()
        remote = ray.remote(num_cpus=1, max_retries=retries)(_ray_entry)
        refs = [remote.remote(fn, t, i, q) for i, t in enumerate(tasks)]
        where = {ref: i for i, ref in enumerate(refs)}
        results: list[TaskResult | None] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.2)
            _drain(q, progress)
            for ref in done:
                i = where[ref]
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayError as err:  # the task failed even after its retries
                    results[i] = TaskResult(i, error=f"ray: {str(err).splitlines()[0]}")
        _drain(q, progress)
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()
