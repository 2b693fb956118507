"""CLIP indexing on Ray: one actor per GPU, each a rank of the same plan (an alternative to torchrun).

Every actor loads the model once and runs ``build_index`` as rank ``i`` of ``n``: it embeds its own
parts (its DataLoader streams decoded batches to its GPU) into the shared output, and the last part
written completes the manifest. The parts, and so the index, are the same as a single process's.
The output folder must be visible to every actor (one machine, or a shared file system).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import InputError
from . import store
from .embed import IndexOptions, IndexReport, build_index
from .images import InputSpec


class _Embedder:
    """A Ray actor: optional setup (e.g. registering a custom model config), then one rank's share."""

    def __init__(self, setup: Callable[[], Any] | None) -> None:
        if setup is not None:
            setup()

    def run(self, inputs: Sequence[InputSpec], out: str, opts: IndexOptions) -> IndexReport:
        return build_index(inputs, out, opts, notify=lambda msg: None)


def build_index_on_ray(inputs: Sequence[InputSpec], out: str | Path, opts: IndexOptions, actors: int,
                       gpus_per_actor: float | None = None, address: str | None = None,
                       setup: Callable[[], Any] | None = None) -> list[IndexReport]:
    """Run ``actors`` ranks as Ray actors (``gpus_per_actor`` defaults to 1 when Ray sees GPUs, else 0)."""
    try:
        import ray
    except ImportError:
        raise InputError("indexing on Ray needs Ray: pip install 'datakit[ray]'") from None
    if actors < 1:
        raise InputError("--actors must be >= 1")
    if opts.overwrite:
        raise InputError("--overwrite cannot be combined with Ray actors (ranks would delete each other's parts)")
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        ray.init(**kwargs)
        started = True
    try:
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if ray.cluster_resources().get("GPU", 0) >= actors else 0.0
        remote = ray.remote(num_cpus=1, num_gpus=gpus_per_actor)(_Embedder)
        handles = [remote.remote(setup) for _ in range(actors)]
        runs = [h.run.remote(list(inputs), str(out), replace(opts, rank=i, world_size=actors, progress=False))
                for i, h in enumerate(handles)]
        try:
            reports: list[IndexReport] = ray.get(runs)
        except ray.exceptions.RayTaskError as err:
            cause = err.cause if isinstance(getattr(err, "cause", None), Exception) else err
            if isinstance(cause, InputError):
                raise cause from None
            raise InputError(f"a Ray indexing actor failed: {str(err).splitlines()[0]}") from None
        if all(r.manifest is None for r in reports):  # every rank finished: whoever ends last normally writes it
            plan = store.read_json(Path(out) / store.PLAN)
            if plan is not None:
                manifest = store.finalize(Path(out), plan)
                if manifest is not None:
                    reports[-1].manifest = manifest
        return reports
    finally:
        if started:
            ray.shutdown()
