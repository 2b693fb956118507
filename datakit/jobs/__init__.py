"""Running independent tasks, resumably: the executors (one per backend) and the resumable-parts core.

- ``tasks``: what a task result is (value, or an error of a known kind) and how one task runs.
- ``local`` / ``ray``: one executor per backend, same ``run(fn, tasks, progress)``.
- ``registry``: executors built from their options (``make_executor``).
- ``parts``: done markers with a self-digest, scanning for finished parts, stale files.
"""

from typing import Any, Iterable

from .local import LocalExecutor
from .registry import EXECUTORS, ExecutorOptions, make_executor
from .tasks import ErrorKind, Executor, ProgressFn, TaskFn, TaskResult


def _quiet(n: int) -> None:
    """No progress to show."""


def run_local(fn: TaskFn, tasks: Iterable[Any], workers: int = 1, progress: ProgressFn = _quiet) -> list[TaskResult]:
    """Run tasks on the local pool (inline with one worker); results in task order."""
    return LocalExecutor(workers).run(fn, tasks, progress)


def values(results: list[TaskResult]) -> list[Any]:
    """The results' values; the first failure is raised as its error (naming how many more failed)."""
    failed = [r for r in results if not r.ok]
    if failed:
        err = failed[0].exception()
        if len(failed) > 1:
            err.args = (f"{err} (and {len(failed) - 1} more failed tasks)",)
        raise err
    return [r.value for r in results]


__all__ = ["EXECUTORS", "ErrorKind", "Executor", "ExecutorOptions", "LocalExecutor", "ProgressFn", "TaskFn", "TaskResult",
           "make_executor", "run_local", "values"]
