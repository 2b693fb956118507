"""In-training evaluation, sharded over ranks: rank r predicts samples r, r + world, ...; the confusion
matrices are summed with one all-reduce, so every rank gets the same mIoU and none repeats work."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..eval.confusion import Confusion
from ..shards.index import SplitIndex, load_index
from ..shards.reader import decode_sample, iter_split
from .distributed import Dist
from .infer import InferOptions, predict_image


def eval_split(path: str) -> SplitIndex:
    """The eval split's index, checked to have a class table and a mask member (before step 1)."""
    index = load_index(path)
    if index.spec.classes is None or not index.spec.masks:
        raise InputError(f"train.eval_data {path}: needs a class table and a mask member")
    return index


def to_table(index: SplitIndex, names: tuple[str, ...]) -> np.ndarray:
    """Model class id -> the eval table's id, by name (-1 where the table has no such class)."""
    assert index.spec.classes is not None
    by_name = {e.name.strip().lower(): e.id for e in index.spec.classes.entries}
    return np.array([by_name.get(n.strip().lower(), -1) for n in names], dtype=np.int64)


@torch.no_grad()
def evaluate(model: nn.Module, index: SplitIndex, names: tuple[str, ...], device: torch.device,
             opts: InferOptions, dist: Dist = Dist()) -> float:
    """mIoU (classes present in GT or prediction, in [0, 1]) of whole-image predictions on a masked split."""
    table = index.spec.classes
    assert table is not None
    lut = to_table(index, names)
    was_training = model.training
    model.eval()
    conf = Confusion.empty(table.max_id + 1)
    member = index.spec.masks[0].ext
    for i, raw in enumerate(iter_split(index, decode=False)):
        if i % dist.world_size != dist.rank:
            continue
        sample = decode_sample(raw)
        label, _ = predict_image(model, sample["jpg"], device, opts)
        conf.update(sample[member], lut[np.clip(label, 0, len(lut) - 1)], ignore_index=table.ignore_index)
    if dist.world_size > 1:
        total = torch.from_numpy(conf.matrix).to(device)
        torch.distributed.all_reduce(total)
        conf.matrix = total.cpu().numpy()
    model.train(was_training)
    iou = conf.iou()
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
