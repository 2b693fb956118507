"""What every executor shares: the task function's shape, the result type, and error kinds.

``fn(task, progress)`` does one task and returns a picklable value; ``progress(n)`` reports ``n``
more units done (samples, images); a task may carry a ``size`` (its units) that executors report
when they cannot see inside it. A task that raises a DatakitError or OSError becomes a failed
``TaskResult`` with an ``ErrorKind`` (the caller decides; ``--resume`` redoes it); any other
exception is a bug and propagates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Protocol

from ..errors import BuildError, CorruptShardError, DatakitError, InputError, SampleError

ProgressFn = Callable[[int], None]
TaskFn = Callable[[Any, ProgressFn], Any]


class ErrorKind(str, Enum):
    """Why a task failed; ``exception()`` turns it back into the error a caller raises."""

    INPUT = "input"
    CORRUPT = "corrupt"
    SAMPLE = "sample"
    IO = "io"
    WORKER_DIED = "worker_died"
    REMOTE = "remote"


_RAISED_AS: dict[ErrorKind, type[DatakitError]] = {
    ErrorKind.INPUT: InputError, ErrorKind.CORRUPT: CorruptShardError, ErrorKind.SAMPLE: InputError,
    ErrorKind.IO: InputError, ErrorKind.WORKER_DIED: BuildError, ErrorKind.REMOTE: BuildError,
}


def kind_of(err: BaseException) -> ErrorKind:
    if isinstance(err, CorruptShardError):
        return ErrorKind.CORRUPT
    if isinstance(err, SampleError):
        return ErrorKind.SAMPLE
    if isinstance(err, DatakitError):
        return ErrorKind.INPUT
    return ErrorKind.IO


@dataclass
class TaskResult:
    """The outcome of task ``index``: its value, or an error message and kind."""

    index: int
    value: Any = None
    error: str | None = None
    kind: ErrorKind | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def exception(self) -> DatakitError:
        """The error to raise for this failed task."""
        return _RAISED_AS[self.kind or ErrorKind.INPUT](self.error or "task failed")


def run_one(fn: TaskFn, task: Any, index: int, progress: ProgressFn) -> TaskResult:
    """Run one task; input and I/O errors become a failed result, bugs propagate."""
    try:
        return TaskResult(index, fn(task, progress))
    except (DatakitError, OSError) as err:
        detail = str(err) if isinstance(err, DatakitError) else f"{type(err).__name__}: {err}"
        return TaskResult(index, error=detail, kind=kind_of(err))


def task_size(task: Any) -> int:
    """The units of work a task stands for (0 when it does not say)."""
    return int(getattr(task, "size", 0) or 0)


class Executor(Protocol):
    """Runs tasks; results come back in task order. With ``per_worker``, ``fn`` is a factory called
    once in each worker (loading a model, say) that returns the task function."""

    def run(self, fn: Callable[..., Any], tasks: Iterable[Any], progress: ProgressFn,
            per_worker: bool = False) -> list[TaskResult]: ...
