"""Executors by name, each built from the same options: one place to add a backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import InputError
from .local import LocalExecutor
from .ray import RayExecutor
from .tasks import Executor


@dataclass(frozen=True)
class ExecutorOptions:
    """``kind``: a name in ``EXECUTORS``; ``workers``: processes (local) or concurrent tasks/actors (ray);
    ``address``: a Ray cluster to join; ``retries``: Ray's retries of a task whose worker died;
    ``gpus_per_worker``: GPUs each Ray worker claims (None: one when the cluster has one per worker)."""

    kind: str = "local"
    workers: int = 1
    address: str | None = None
    retries: int = 2
    gpus_per_worker: float | None = 0.0


def _local(o: ExecutorOptions) -> Executor:
    return LocalExecutor(o.workers)


def _ray(o: ExecutorOptions) -> Executor:
    return RayExecutor(o.workers, o.address, o.retries, o.gpus_per_worker)


EXECUTORS: dict[str, Callable[[ExecutorOptions], Executor]] = {"local": _local, "ray": _ray}


def make_executor(opts: ExecutorOptions) -> Executor:
    if opts.workers < 1:
        raise InputError("workers must be >= 1")
    if opts.kind not in EXECUTORS:
        raise InputError(f"unknown executor {opts.kind!r}; choose from {sorted(EXECUTORS)}")
    if opts.address and opts.kind != "ray":
        raise InputError("--address is a Ray cluster address: use it with --executor ray")
    return EXECUTORS[opts.kind](opts)
