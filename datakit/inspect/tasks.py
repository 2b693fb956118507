"""The one call into the executors for the commands that read shards back (stats, export).

The executor API is being reshaped; rewire here. A failed task's error comes back as a string
``"<ErrorType>: message"``; it is raised again as one line: CorruptShardError for a bad shard,
InputError for everything else (bad input, a refused file, a full disk).
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import CorruptShardError, InputError
from ..executors import local_executor

_ERRORS = {"CorruptShardError": CorruptShardError}


def run_tasks(fn: Callable[..., Any], tasks: list[Any], workers: int, progress: Callable[[int], None]) -> list[Any]:
    """``fn(task, progress)`` over ``tasks`` on a local pool; the values in task order, or the first error raised."""
    results = local_executor(fn, tasks, workers, progress)
    for res in results:
        if res.error:
            kind, _, message = res.error.partition(": ")
            raise _ERRORS.get(kind, InputError)(message or res.error)
    return [res.value for res in results]
