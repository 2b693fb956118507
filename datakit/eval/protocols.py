"""The feature-based protocols over files, for the CLI: K-means (MaskContrast), linear probe
(MaskContrast), distance matching (PASS / ImageNet-S).

Features are one ``<key>.npz`` per sample (key = the shard key), written by any model (e.g.
``datakit features``): ``embedding`` (D, h, w) + ``saliency`` (h, w) for K-means, ``features``
(C, h, w) for the probe and distance matching. Ground truth is the mask member of a split of
shards, read in stored order; its class table gives the class count and the ignore id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from ..shards.index import SplitIndex
from .gt import load_split, mask_member
from ..nearest import resize_nearest
from .kmeans import KMeansProtocol, KMeansReport, kmeans_protocol, salient_prototypes


def _arrays(folder: str, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    path = os.path.join(folder, f"{key}.npz")
    if "/" in key or "\\" in key or key.startswith(".."):
        raise InputError(f"sample key {key!r} is a path; refusing to read features by it")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [n for n in names if n not in npz.files]
            if missing:
                raise InputError(f"{path}: no {missing} array (has {npz.files})")
            return {n: np.asarray(npz[n]) for n in names}
    except FileNotFoundError:
        raise InputError(f"features missing for sample {key}: {path}") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable features ({err})") from None


def gt_items(split: str, member: str | None = None) -> tuple[SplitIndex, Iterator[tuple[str, np.ndarray]]]:
    """(index, iterator of (key, GT map)) of a split's mask member."""
    from ..shards.reader import iter_split

    index = load_split(split)
    if index.spec.classes is None:
        raise InputError(f"{split}: the split has no class table")
    ext = mask_member(index, member)
    return index, ((str(s["__key__"]), np.asarray(s[ext]).astype(np.int64)) for s in iter_split(index))


def num_classes(index: SplitIndex) -> int:
    table = index.spec.classes
    assert table is not None
    return max(e.id for e in table.entries if e.id != table.ignore_index) + 1


def kmeans_files(features: str, gt: str, opts: KMeansProtocol, member: str | None = None) -> KMeansReport:
    """MaskContrast's K-means protocol on ``<key>.npz`` (embedding, saliency) files against a split."""
    index, items = gt_items(gt, member)
    protos, fgs, gts = [], [], []
    for key, ids in items:
        arr = _arrays(features, key, ("embedding", "saliency"))
        protos.append(salient_prototypes(arr["embedding"][None], arr["saliency"][None], opts.threshold)[0])
        fgs.append((arr["saliency"] > opts.threshold).astype(np.uint8))
        gts.append(ids)
    if not gts:
        raise InputError(f"{gt}: no samples")
    dtype = np.float32 if opts.backend == "sklearn" else np.float64  # MaskContrast's prototypes are float32
    opts = KMeansProtocol(**{**opts.__dict__, "num_classes": num_classes(index), "ignore_index": index.spec.ignore_id})
    return kmeans_protocol(np.stack(protos).astype(dtype), fgs, gts, opts)


@dataclass(frozen=True)
class ProbeData:
    features: np.ndarray
    labels: np.ndarray
    keys: list[str]


def probe_data(features: str, gt: str, member: str | None = None, label_size: int = 0) -> tuple[ProbeData, SplitIndex]:
    """Stacked features and labels (resized nearest, OpenCV's rule, to ``label_size`` squared when given,
    else to each feature map's size times its stride to the GT)."""
    index, items = gt_items(gt, member)
    feats, labels, keys = [], [], []
    for key, ids in items:
        f = _arrays(features, key, ("features",))["features"]
        size = (label_size, label_size) if label_size else ids.shape
        labels.append(resize_nearest(ids, size) if ids.shape != tuple(size) else ids)
        feats.append(f.astype(np.float32))
        keys.append(key)
    shapes = {f.shape for f in feats} | {(0,) + lb.shape for lb in labels}
    if len({f.shape for f in feats}) > 1 or len({lb.shape for lb in labels}) > 1:
        raise InputError(f"probe inputs must share one size (got {sorted(map(str, shapes))[:4]}); pass --label-size")
    return ProbeData(np.stack(feats), np.stack(labels), keys), index


def probe_files(train_features: str, train_gt: str, features: str, gt: str, opts: Any, label_size: int = 512) -> Any:
    """Train MaskContrast's probe on one split's features and score it on another's, at GT resolution."""
    from .confusion import Confusion
    from .probe import predict_probe, train_probe
    from .semseg import report

    train, index = probe_data(train_features, train_gt, None, label_size)
    k = num_classes(index)
    head = train_probe(train.features, train.labels, k, opts)
    val_index, items = gt_items(gt)
    conf = Confusion.empty(k)
    images = 0
    for key, ids in items:
        f = _arrays(features, key, ("features",))["features"].astype(np.float32)
        pred = predict_probe(head, f[None], ids.shape, opts.device)[0]
        conf.update(ids, pred, val_index.spec.ignore_id)
        images += 1
    names = [e.name for e in sorted(index.spec.classes.entries, key=lambda e: e.id) if e.id < k]  # type: ignore[union-attr]
    return report(conf, names, images)


def distance_files(bank_features: str, bank_gt: str, features: str, data: str, out: str, knn: Any) -> int:
    """PASS distance matching: a bank from train-semi features + masks, kNN labels for ``data``'s features,
    written as official ImageNet-S PNGs (``<wnid>/<name>.png``) under ``out``; returns the image count."""
    from pathlib import Path

    from ..io import atomic_write_bytes
    from ..shards.reader import iter_split
    from .distance import class_embeddings, distance_matching
    from .gt import encode_id_png, imagenets_rel

    bank_index, items = gt_items(bank_gt)
    embs, labels = [], []
    for key, ids in items:
        f = _arrays(bank_features, key, ("features",))["features"]
        e, lab = class_embeddings(f[None], ids[None], bank_index.spec.ignore_id)
        embs.append(e.numpy())
        labels.append(lab.numpy())
    bank, bank_labels = np.concatenate(embs), np.concatenate(labels)
    k = num_classes(bank_index)
    index = load_split(data)
    root = Path(out)
    count = 0
    for sample in iter_split(index):
        key = str(sample["__key__"])
        h, w = sample["jpg"].shape[:2]
        pred = distance_matching(_arrays(features, key, ("features",))["features"], bank, bank_labels, (h, w), k, knn)
        rel = imagenets_rel(key, sample.get("json", {}) or {})
        target = root / rel
        if not target.resolve().is_relative_to(root.resolve()) or ".." in rel.split("/"):
            raise InputError(f"sample {key}: output path {rel!r} leaves {out}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, encode_id_png(pred))
        count += 1
    return count
