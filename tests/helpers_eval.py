"""An independent transcription of the official ImageNet-S per-image evaluation (torch.histc, float32).

Used only by the tests to cross-check datakit.eval.imagenets: boundaries follow PASS's
``mask_to_boundary`` (cv2.erode replaced by scipy's binary erosion with the same 3x3 kernel,
zero padding of one pixel and an outside border that never erodes), histograms use
``torch.histc`` exactly as ``evaluation/metric.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage


def mask_to_boundary(mask: np.ndarray, ratio: float = 0.03) -> np.ndarray:
    h, w = mask.shape
    d = int(round(ratio * np.sqrt(h**2 + w**2)))
    d = max(d, 1)
    eroded = np.pad(mask.astype(bool), 1)
    for _ in range(d):
        eroded = ndimage.binary_erosion(eroded, structure=np.ones((3, 3), bool), border_value=1)
    return mask.astype(bool) & ~eroded[1 : h + 1, 1 : w + 1]


def get_boundary_mask(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for v in np.unique(x):
        out += mask_to_boundary(x == v) * v
    return out


def iou_gpu(output, target, k):
    inter = output[output == target]
    return (torch.histc(inter, bins=k, min=0, max=k - 1), torch.histc(output, bins=k, min=0, max=k - 1),
            torch.histc(target, bins=k, min=0, max=k - 1))


def fmeasure(output, target, eps=1e-20, beta=0.3):
    target = (target > 0) * 1.0
    output = (output > 0) * 1.0
    t, p, tp = torch.sum(target), torch.sum(output), torch.sum(target * output)
    recall, precision = tp / (t + eps), tp / (p + eps)
    return (1 + beta) * precision * recall / (beta * precision + recall + eps)


def sizes(predict, gt, bpred, bgt, k, acc):
    counts = torch.bincount(gt.view(-1).long())
    size = {}
    for c in torch.unique(gt.view(-1)):
        if c == 0:
            continue
        size[int(c)] = math.ceil(100.0 * counts[int(c)] / sum(counts))
    groups = [[], [], [], []]
    for c, v in size.items():
        groups[0 if v <= 5 else 1 if v <= 25 else 2 if v <= 50 else 3].append(c)
    bg = gt == 0
    for i, group in enumerate(groups):
        if not group:
            continue
        sel = bg.clone()
        for c in group:
            sel |= gt == c
        a, b, c_ = iou_gpu(predict[sel], gt[sel], k)
        acc["size"][i] += torch.stack([a, b, c_])
        a, b, c_ = iou_gpu(bpred[sel], bgt[sel], k + 1)
        acc["bsize"][i] += torch.stack([a[1:], b[1:], c_[1:]])


def official_image(gt: np.ndarray, pred: np.ndarray, num_classes: int, match: dict | None = None) -> dict:
    """The official per-image accumulators for ids 0..num_classes, as float tensors."""
    k = num_classes + 1
    bgt = get_boundary_mask(gt.astype(np.int64) + 1)
    bpred = get_boundary_mask(pred.astype(np.int64) + 1)
    g = torch.from_numpy(gt.astype(np.float32)).view(-1)
    p = torch.from_numpy(pred.astype(np.float32)).view(-1)
    bg_ = torch.from_numpy(bgt.astype(np.float32)).view(-1)
    bp = torch.from_numpy(bpred.astype(np.float32)).view(-1)
    keep = g != 1000
    g, p, bg_, bp = g[keep], p[keep], bg_[keep], bp[keep]
    if match is not None:
        pm, bpm = torch.zeros_like(p), torch.zeros_like(bp)
        for v in torch.unique(p):
            pm[p == v] = match[int(v)]
        for v in torch.unique(bp):
            if v > 0:
                bpm[bp == v] = match[int(v) - 1] + 1
        p, bp = pm, bpm
    acc = {"size": torch.zeros(4, 3, k), "bsize": torch.zeros(4, 3, k)}
    acc["main"] = torch.stack(iou_gpu(p, g, k))
    b = iou_gpu(bp, bg_, k + 1)
    acc["boundary"] = torch.stack([b[0][1:], b[1][1:], b[2][1:]])
    sizes(p, g, bp, bg_, k, acc)
    acc["f"] = float(fmeasure(p, g))
    area_output, area_target = acc["main"][1], acc["main"][2]
    label = torch.argmax(area_output[1:]) + 1
    acc["correct"] = int((area_target[label] > 0) * (area_output[label] > 0))
    return acc


# ---- tiny data sets written the way users have them -------------------------------------------

S50_VAL = [  # (wnid, name) pairs from the real ImageNet-S50 validation list
    ("n01443537", "ILSVRC2012_val_00004677"),
    ("n01443537", "ILSVRC2012_val_00021905"),
    ("n01531178", "ILSVRC2012_val_00025507"),
    ("n01531178", "ILSVRC2012_val_00019236"),
]


def blob_gt(seed: int, height: int, width: int, ids: list[int], ignore: bool = True) -> np.ndarray:
    """A GT map of background plus one rectangle per id (later ones on top) and an ignore strip."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((height, width), dtype=np.int64)
    for cid in ids:
        y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
        y1, x1 = rng.integers(y0 + 3, height + 1), rng.integers(x0 + 3, width + 1)
        gt[y0:y1, x0:x1] = cid
    if ignore:
        gt[:, :2] = 1000
    return gt


def write_id_png(path, ids: np.ndarray) -> None:
    from datakit.eval.gt import encode_id_png

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_id_png(ids))


def write_imagenets_shards(out, samples: list[tuple[str, str, np.ndarray]], subset: int = 50, split: str = "validation"):
    """Shards + index as the ImageNet-S build writes them: 16-bit seg.png, classes 0..N, ignore 1000."""
    from datakit.shards.index import make_index, write_index
    from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
    from datakit.shards.writer import ShardWriter

    names = ["other"] + [f"class{i}" for i in range(1, subset + 1)]
    spec = SplitSpec(dataset=f"imagenets{subset}", split=split, classes=ClassTable.from_names(names, 1000),
                     masks=(MaskMember(ext="seg.png", bits=16, fill=1000),))
    out.mkdir(parents=True, exist_ok=True)
    stats = []
    for part in range(0, len(samples), 3):  # several shards, so the worker pool has tasks
        writer = ShardWriter(out, f"{split}-{part // 3:06d}", spec, strict=True)
        for wnid, name, gt in samples[part : part + 3]:
            image = np.zeros(gt.shape + (3,), dtype=np.uint8)
            meta = {"wnid": wnid, "subset": subset, "path": f"val/{wnid}/{name}.JPEG"}  # as the ImageNet-S build
            writer.write(name, image=image, masks={"seg.png": gt.astype(np.uint16)}, meta=meta, origin=name)
        stats.append(writer.close())
    write_index(out, make_index(spec, stats, {}))
    return out
