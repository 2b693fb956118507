"""Which batches each rank trains on, and their labels in the model's vocabulary.

``feed = "mix"``: every rank reads a weighted mix of all datasets, each batch from one dataset.
``feed = "rank"``: rank r reads only dataset ``r % n`` (LarvSeg's ``MixBatchDataset``), the ranks of
one dataset splitting it among themselves; the loader position of each dataset is saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..shards.index import SplitIndex
from .augment import train_transform
from .config import Config
from .distributed import Dist
from .losses import IGNORE
from .vocab import Vocabulary


@dataclass
class Feed:
    """This rank's loader, the dataset it reads when it reads one (``feed = "rank"``) and its group."""

    loader: Any
    dataset: int | None
    group_rank: int
    group_size: int


def make_feed(cfg: Config, indexes: list[SplitIndex], dist: Dist, epoch: int) -> Feed:
    """One split: ``stream.loader``; several: a weighted mix with per-source batches, or one dataset per rank."""
    from ..stream import StreamOptions, loader
    from ..stream.mix import MixSource, mix_loader

    # the loader gets its own generator: creating an iterator must not consume the global torch RNG,
    # or a resumed run's dropout masks would drift from an uninterrupted run's
    common: dict[str, Any] = dict(seed=cfg.train.seed, epoch=epoch, num_workers=cfg.train.workers,
                                  generator=torch.Generator().manual_seed(cfg.train.seed))
    if cfg.train.feed == "rank":
        n = len(indexes)
        if dist.world_size < n:
            raise InputError(f"train.feed = 'rank' gives each rank one of {n} datasets: run at least {n} ranks "
                             f"(torchrun --nproc-per-node {n}), or use feed = 'mix'")
        d = dist.rank % n
        size = len(range(d, dist.world_size, n))
        dl = loader(indexes[d], cfg.train.batch_size, transform=train_transform(cfg, indexes[d].spec.ignore_id),
                    options=StreamOptions(tail="drop"), rank=dist.rank // n, world_size=size, **common)
        return Feed(dl, d, dist.rank // n, size)
    common.update(rank=dist.rank, world_size=dist.world_size)
    if len(indexes) == 1:
        dl = loader(indexes[0], cfg.train.batch_size, transform=train_transform(cfg, indexes[0].spec.ignore_id),
                    options=StreamOptions(tail="drop"), **common)
        return Feed(dl, 0, dist.rank, dist.world_size)
    sources = [MixSource(ix, d.weight, train_transform(cfg, ix.spec.ignore_id)) for ix, d in zip(indexes, cfg.data)]
    return Feed(mix_loader(sources, cfg.train.batch_size, per_source=True, **common), None, dist.rank, dist.world_size)


def gather_states(feed: Feed, cfg: Config, dist: Dist) -> str:
    """The loader position(s) as JSON text: one state, or (feed = rank) one per dataset."""
    state = feed.loader.state_dict()
    if cfg.train.feed != "rank":
        return json.dumps(state)
    everyone: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(everyone, state)
    return json.dumps([everyone[d] for d in range(len(cfg.data))])


def restore_state(feed: Feed, cfg: Config, text: str) -> int:
    """Load the saved position into this rank's loader; returns the loader's epoch."""
    state = json.loads(text)
    if cfg.train.feed == "rank":
        if not isinstance(state, list) or feed.dataset is None or feed.dataset >= len(state):
            raise InputError("the checkpoint's loader state was not written with train.feed = 'rank'")
        state = state[feed.dataset]
    elif isinstance(state, list):
        raise InputError("the checkpoint's loader state was written with train.feed = 'rank'")
    feed.loader.load_state_dict(state)
    return int(state["epoch"])  # at an epoch boundary the cursor is already in the next epoch


def batch_targets(cfg: Config, vocab: Vocabulary, batch: dict[str, Any], src: int, ignore: int) -> tuple[str, torch.Tensor]:
    """The batch's labels in the model's vocabulary: ("pixel", B×H×W) or ("image", B); ``ignore``
    is the dataset's ignore id (also what crops pad masks with)."""
    data = cfg.data[src]
    if data.labels == "image":
        if "cls" not in batch:
            raise InputError(f"{data.path}: samples have no 'cls' member for image-level labels")
        return "image", torch.from_numpy(vocab.map(src, np.asarray(batch["cls"])))
    if data.mask not in batch:
        raise InputError(f"{data.path}: samples have no {data.mask!r} member for {data.labels} labels")
    mask = np.asarray(batch[data.mask]).astype(np.int64)
    if data.labels == "pseudo":  # a foreground mask + the image label: class where salient, background elsewhere
        cls = vocab.map(src, np.asarray(batch["cls"]))[:, None, None]
        background = vocab.map(src, np.zeros(1, np.int64))[0]
        labels = np.where(mask > data.fg_threshold, cls, background)
        return "pixel", torch.from_numpy(np.where(mask == ignore, IGNORE, labels))
    return "pixel", torch.from_numpy(vocab.map(src, mask))
