"""Streaming datakit shards into training: exact epochs over ranks x workers, a (seed, epoch)
order, elastic mid-epoch resume, local/http/s3 shards, joint image+mask transforms, mixing.

The order, partition, reader and transform modules do not import torch; ``ShardStream``,
``loader``, ``StreamLoader`` and ``ThreadLoader`` (which need it) are imported on first use.
"""

from __future__ import annotations

from typing import Any

from .order import SampleSpace, Shuffle, epoch_order
from .partition import TAILS, rank_batches, worker_batches
from .reader import ReadOptions

_LAZY = {
    "ShardStream": "dataset",
    "StreamLoader": "dataset",
    "StreamOptions": "dataset",
    "loader": "dataset",
    "ThreadLoader": "threads",
    "collate": "collate",
    "SplitDataset": "access",
    "MixPlan": "mix",
    "MixSource": "mix",
    "mix_loader": "mix",
}

__all__ = ["SampleSpace", "Shuffle", "epoch_order", "TAILS", "rank_batches", "worker_batches",
           "ReadOptions", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'datakit.stream' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
