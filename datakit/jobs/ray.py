"""The Ray executor: the same tasks as the local pool, as Ray tasks (or actors, with per-worker setup).

Ray retries a task whose worker process dies (``max_retries``); a task rewrites its output from
scratch and writes its done marker last, so a retry cannot leave half a part behind. At most
``2 x workers`` tasks are in flight, so a generator of tasks is never materialised. With
``per_worker``, ``workers`` actors each call the factory once (a model loaded per GPU, say) and take
tasks as they free up. Progress advances as tasks finish, by their ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..errors import InputError
from .tasks import ErrorKind, ProgressFn, TaskFn, TaskResult, run_one, task_size


def _ignore(n: int) -> None:
    """In-task progress is not sent back to the driver."""


def _ray_entry(fn: TaskFn, task: Any, index: int) -> TaskResult:
    return run_one(fn, task, index, _ignore)


class _Worker:
    """An actor that makes its task function once and runs tasks with it."""

    def __init__(self, factory: Callable[[], TaskFn]) -> None:
        self.fn = factory()

    def run(self, task: Any, index: int) -> TaskResult:
        return run_one(self.fn, task, index, _ignore)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'datakit[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """``address``: an existing cluster (``auto`` or ``host:port``); none starts a local Ray for this run."""

    workers: int = 1
    address: str | None = None
    retries: int = 2
    gpus_per_worker: float | None = 0.0

    def _gpus(self, ray: Any) -> float:
        """The GPUs a worker claims; None: one each when the cluster has a GPU per worker, else none."""
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= self.workers else 0.0

    def run(self, fn: Callable[..., Any], tasks: Iterable[Any], progress: ProgressFn,
            per_worker: bool = False) -> list[TaskResult]:
        ray = _ray()
        started = self._start(ray)
        try:
            if per_worker:
                return self._actors(ray, fn, iter(enumerate(tasks)), progress)
            return self._tasks(ray, fn, iter(enumerate(tasks)), progress)
        finally:
            if started:
                ray.shutdown()

    def _start(self, ray: Any) -> bool:
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if self.address:
            kwargs["address"] = self.address
        else:
            kwargs["num_cpus"] = max(1, self.workers)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise InputError(f"cannot start or reach Ray{' at ' + self.address if self.address else ''}: {err}") from None
        return True

    def _tasks(self, ray: Any, fn: TaskFn, tasks: Iterator[tuple[int, Any]], progress: ProgressFn) -> list[TaskResult]:
        remote = ray.remote(num_cpus=1, num_gpus=self._gpus(ray), max_retries=self.retries)(_ray_entry)
        fn_ref = ray.put(fn)  # the source and options travel once, not once per task
        return self._gather(ray, lambda task, index: remote.remote(fn_ref, task, index), tasks, progress)

    def _actors(self, ray: Any, factory: Callable[[], TaskFn], tasks: Iterator[tuple[int, Any]],
                progress: ProgressFn) -> list[TaskResult]:
        actor = ray.remote(num_cpus=1, num_gpus=self._gpus(ray), max_restarts=self.retries,
                           max_task_retries=self.retries)(_Worker)
        free = [actor.remote(factory) for _ in range(max(1, self.workers))]
        busy: dict[Any, Any] = {}

        def submit(task: Any, index: int) -> Any:
            worker = free.pop()
            ref = worker.run.remote(task, index)
            busy[ref] = worker
            return ref

        def release(ref: Any) -> None:
            free.append(busy.pop(ref))

        return self._gather(ray, submit, tasks, progress, window=len(free), release=release)

    def _gather(self, ray: Any, submit: Callable[[Any, int], Any], tasks: Iterator[tuple[int, Any]],
                progress: ProgressFn, window: int | None = None,
                release: Callable[[Any], None] | None = None) -> list[TaskResult]:
        """Keep ``window`` tasks in flight, collect results by index as they finish."""
        limit = window or 2 * max(1, self.workers)
        pending: dict[Any, tuple[int, int]] = {}
        results: dict[int, TaskResult] = {}
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < limit:
                try:
                    index, task = next(tasks)
                except StopIteration:
                    exhausted = True
                    break
                pending[submit(task, index)] = (index, task_size(task))
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            progress(0)
            for ref in done:
                index, size = pending.pop(ref)
                if release is not None:
                    release(ref)
                try:
                    results[index] = ray.get(ref)
                except ray.exceptions.RayError as err:  # the task failed even after its retries
                    results[index] = TaskResult(index, error=f"ray: {str(err).splitlines()[0]}", kind=ErrorKind.REMOTE)
                progress(size)
        return [results[i] for i in sorted(results)]
