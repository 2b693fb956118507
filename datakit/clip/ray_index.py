"""CLIP indexing on Ray: one actor per GPU, each a rank of the same plan (an alternative to torchrun).

This is the Ray executor with per-worker setup: each actor runs ``setup`` (registering a custom model
config, say) and loads the model once, then embeds its rank's parts into the shared output. The parts,
and so the index, are the same as a single process's; whoever finishes last writes the manifest.
The output folder must be visible to every actor (one machine, or a shared file system).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import InputError
from ..jobs import ExecutorOptions, ProgressFn, make_executor, values
from . import store
from .embed import IndexOptions, IndexReport, build_index
from .images import InputSpec


def _quiet(message: str) -> None:
    """Actors do not print; their notes come back in the reports."""


def rank_worker(inputs: Sequence[InputSpec], out: str, opts: IndexOptions, world: int,
                setup: Callable[[], Any] | None) -> Callable[[], Callable[[int, ProgressFn], IndexReport]]:
    """The per-worker factory: set up and load the model once, then embed any rank given."""
    def factory() -> Callable[[int, ProgressFn], IndexReport]:
        from .model import load_model

        if setup is not None:
            setup()
        loaded = load_model(opts.model, opts.device, opts.precision)

        def run(rank: int, progress: ProgressFn) -> IndexReport:
            ranked = replace(opts, rank=rank, world_size=world, progress=False)
            return build_index(list(inputs), out, ranked, notify=_quiet, loaded=loaded)

        return run

    return factory


def build_index_on_ray(inputs: Sequence[InputSpec], out: str | Path, opts: IndexOptions, actors: int,
                       gpus_per_actor: float | None = None, address: str | None = None,
                       setup: Callable[[], Any] | None = None) -> list[IndexReport]:
    """Run ``actors`` ranks as Ray actors (``gpus_per_actor`` defaults to 1 when Ray sees a GPU per actor, else 0)."""
    if actors < 1:
        raise InputError("--actors must be >= 1")
    if opts.overwrite:
        raise InputError("--overwrite cannot be combined with Ray actors (ranks would delete each other's parts)")
    executor = make_executor(ExecutorOptions("ray", actors, address, gpus_per_worker=gpus_per_actor))
    factory = rank_worker(inputs, str(out), opts, actors, setup)
    reports: list[IndexReport] = values(executor.run(factory, range(actors), lambda n: None, per_worker=True))
    if all(r.manifest is None for r in reports):  # every rank finished: whoever ends last normally writes it
        plan = store.read_json_if_present(Path(out) / store.PLAN)
        if plan is not None:
            manifest = store.finalize(Path(out), plan)
            if manifest is not None:
                reports[-1].manifest = manifest
    return reports
