"""Run shard tasks as Ray remote functions: the same tasks and worker as the local pool.

Ray retries a task whose worker process dies (``max_retries``); the task rewrites its shard from
scratch, and its done marker is written last, so a retry cannot leave a half shard behind.
Progress advances as tasks finish (by their record count): a progress actor would cost a process
start per build, which on a small machine is more than the build itself.
"""

from __future__ import annotations

from typing import Any, Sequence

from .errors import InputError
from .executors import ProgressFn, TaskFn, TaskResult, _run_one


def _ignore(n: int) -> None:
    """In-task progress is not sent back to the driver."""


def _ray_entry(fn: TaskFn, task: Any, index: int) -> TaskResult:
    return _run_one(fn, task, index, _ignore)


def run_on_ray(fn: TaskFn, tasks: Sequence[Any], workers: int, progress: ProgressFn,
               address: str | None = None, retries: int = 2) -> list[TaskResult]:
    """Submit every task, gather results in task order; starts a local Ray unless one is running."""
    try:
        import ray
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
        remote = ray.remote(num_cpus=1, max_retries=retries)(_ray_entry)
        fn_ref = ray.put(fn)  # the source and options travel once, not once per task
        refs = [remote.remote(fn_ref, t, i) for i, t in enumerate(tasks)]
        where = {ref: i for i, ref in enumerate(refs)}
        results: list[TaskResult | None] = [None] * len(tasks)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                i = where[ref]
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayError as err:  # the task failed even after its retries
                    results[i] = TaskResult(i, error=f"ray: {str(err).splitlines()[0]}")
                progress(len(getattr(tasks[i], "records", ())))
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()
