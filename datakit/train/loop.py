"""The training loop: shards in through the streaming loader, losses by label kind, checkpoints that
include the loader's position (a resumed run continues exactly), logs to console and JSONL."""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..shards.index import SplitIndex, load_index
from .config import Config
from .distributed import Dist, setup_distributed
from .losses import IGNORE, image_level_ce, pixel_ce
from .model import build_model
from .vocab import Vocabulary

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainResult:
    iterations: int
    losses: list[float]
    checkpoint: str
    samples_per_s: float
    eval_miou: float | None = None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def lr_factor(cfg: Config, step: int) -> float:
    """Linear warm-up, then poly / cosine / constant decay over the run's iterations."""
    o, total = cfg.optim, cfg.train.iterations
    if o.warmup and step < o.warmup:
        return (step + 1) / o.warmup
    progress = min(1.0, (step - o.warmup) / max(1, total - o.warmup))
    if o.schedule == "poly":
        return (1 - progress) ** o.power
    if o.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def ignore_of(ix: SplitIndex) -> int:
    table = ix.spec.classes
    return table.ignore_index if table is not None and table.ignore_index is not None else 255


def make_loader(cfg: Config, indexes: list[SplitIndex], dist: Dist, epoch: int):
    """One split: ``stream.loader``; several: a weighted mix with per-source batches (as LarvSeg)."""
    from ..stream import loader
    from ..stream.mix import MixSource, mix_loader
    from ..stream.transforms import seg_train

    def transform(ix: SplitIndex):
        return seg_train(cfg.train.crop, ignore_of(ix))

    # the loader gets its own generator: creating an iterator must not consume the global torch RNG,
    # or a resumed run's dropout masks would drift from an uninterrupted run's
    common = dict(seed=cfg.train.seed, epoch=epoch, rank=dist.rank, world_size=dist.world_size,
                  num_workers=cfg.train.workers, generator=torch.Generator().manual_seed(cfg.train.seed))
    if len(indexes) == 1:
        from ..stream import StreamOptions

        return loader(indexes[0], cfg.train.batch_size, transform=transform(indexes[0]),
                      options=StreamOptions(tail="drop"), **common)
    sources = [MixSource(ix, d.weight, transform(ix)) for ix, d in zip(indexes, cfg.data)]
    return mix_loader(sources, cfg.train.batch_size, per_source=True, **common)


def batch_targets(cfg: Config, vocab: Vocabulary, batch: dict[str, Any], src: int, ignore: int) -> tuple[str, torch.Tensor]:
    """The batch's labels in the model's vocabulary: ("pixel", B×H×W) or ("image", B); ``ignore``
    is the dataset's ignore id (also what crops pad masks with)."""
    data = cfg.data[src]
    if data.labels == "image":
        return "image", torch.from_numpy(vocab.map(src, batch["cls"].numpy()))
    if data.mask not in batch:
        raise InputError(f"{data.path}: samples have no {data.mask!r} member for {data.labels} labels")
    mask = batch[data.mask].numpy().astype(np.int64)
    if data.labels == "pseudo":  # a foreground mask + the image label: class where salient, background elsewhere
        cls = vocab.map(src, batch["cls"].numpy())[:, None, None]
        background = vocab.map(src, np.zeros(1, np.int64))[0]
        labels = np.where(mask > data.fg_threshold, cls, background)
        return "pixel", torch.from_numpy(np.where(mask == ignore, IGNORE, labels))
    return "pixel", torch.from_numpy(vocab.map(src, mask))


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train(cfg: Config, resume: bool = False, log: Callable[[str], None] = print) -> TrainResult:
    """Run (or resume) the training described by ``cfg``; returns the per-step losses and the checkpoint path."""
    dist = setup_distributed()
    if cfg.model.num_classes and cfg.model.num_classes < 2:
        raise InputError("model.num_classes must be >= 2 (or 0: the datasets' union vocabulary)")
    device = pick_device(cfg.train.device)
    if device.type == "cuda" and dist.world_size > 1:
        device = torch.device("cuda", dist.local_rank)
    torch.manual_seed(cfg.train.seed + dist.rank)  # ranks draw different dropout masks
    np.random.seed(cfg.train.seed)
    random.seed(cfg.train.seed)
    indexes = [load_index(d.path) for d in cfg.data]
    for ix, d in zip(indexes, cfg.data):
        if ix.spec.classes is None:
            raise InputError(f"{d.path}: the index has no class table; the trainer needs one")
    vocab = Vocabulary.union([ix.spec.classes for ix in indexes])  # type: ignore[misc]
    num_classes = cfg.model.num_classes or len(vocab.names)
    if num_classes < len(vocab.names):
        raise InputError(f"model.num_classes={num_classes} is smaller than the datasets' {len(vocab.names)} classes")
    model = build_model(cfg.model, num_classes).to(device)
    optimizer = make_optimizer(cfg, model)
    out = Path(cfg.train.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    step, epoch, loader_state = 0, 0, None
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if list(state["vocab"]) != list(vocab.names):
            raise InputError(f"{ckpt_path}: written for another class vocabulary; refusing to resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        # the loader's own epoch is the truth: at an epoch boundary its cursor is already in the next one
        step, epoch, loader_state = state["step"], int(state["loader"]["epoch"]), state["loader"]
        _set_rng_state(state["rng"])
        log(f"resumed from {ckpt_path} at step {step}")
    net: nn.Module = model
    if dist.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    use_amp = cfg.train.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if resume and ckpt_path.exists() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    dl = make_loader(cfg, indexes, dist, epoch)
    if loader_state is not None:
        dl.load_state_dict(loader_state)
    logfile = open(out / "log.jsonl", "a", encoding="utf-8") if dist.rank == 0 else None
    losses: list[float] = []
    eval_miou: float | None = None
    t0, seen = time.perf_counter(), 0
    net.train()
    try:
        while step < cfg.train.iterations:
            progressed = False
            for batch in dl:
                progressed = True
                src = int(batch["__source__"][0]) if "__source__" in batch else 0
                kind, target = batch_targets(cfg, vocab, batch, src, ignore_of(indexes[src]))
                images = batch["image"].permute(0, 3, 1, 2).to(device, non_blocking=True)
                target = target.to(device)
                for group in optimizer.param_groups:
                    group["lr"] = cfg.optim.lr * lr_factor(cfg, step)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = net(images)
                    loss = pixel_ce(logits.float(), target) if kind == "pixel" else image_level_ce(logits.float(), target)
                    loss = loss * cfg.data[src].loss_weight
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                seen += images.shape[0] * dist.world_size
                losses.append(float(loss.detach()))
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                if logfile is not None and (step % cfg.train.log_every == 0 or step == cfg.train.iterations):
                    rec = {"step": step, "epoch": epoch, "loss": round(losses[-1], 6), "lr": optimizer.param_groups[0]["lr"],
                           "samples_per_s": round(rate, 2), "source": src}
                    logfile.write(json.dumps(rec) + "\n")
                    logfile.flush()
                    log(f"step {step}/{cfg.train.iterations} loss {losses[-1]:.4f} lr {rec['lr']:.2e} {rate:.1f} samples/s")
                if dist.rank == 0 and cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0:
                    _checkpoint(ckpt_path, model, optimizer, scaler, step, dl, vocab, cfg)
                if cfg.train.eval_every and (step % cfg.train.eval_every == 0 or step == cfg.train.iterations):
                    eval_miou = evaluate(model, cfg.train.eval_data, vocab, device)
                    net.train()
                    if logfile is not None:
                        logfile.write(json.dumps({"step": step, "eval_miou": round(eval_miou, 6)}) + "\n")
                        logfile.flush()
                        log(f"step {step}: eval mIoU {100 * eval_miou:.2f}")
                if step >= cfg.train.iterations:
                    break
            else:
                if not progressed:
                    raise InputError("the training data yielded no batch (fewer samples than one global batch?)")
                epoch += 1
                dl.set_epoch(epoch)
        if dist.rank == 0:
            _checkpoint(ckpt_path, model, optimizer, scaler, step, dl, vocab, cfg)
    finally:
        if logfile is not None:
            logfile.close()
    return TrainResult(step, losses, str(ckpt_path), seen / max(time.perf_counter() - t0, 1e-9), eval_miou)


@torch.no_grad()
def evaluate(model: nn.Module, split: str, vocab: Vocabulary, device: torch.device) -> float:
    """mIoU (classes present in GT or prediction) of whole-image predictions on a split with masks."""
    from ..eval.confusion import Confusion
    from ..shards.reader import iter_split
    from .predict import predict_image

    index = load_index(split)
    if index.spec.classes is None or not index.spec.masks:
        raise InputError(f"eval_data {split}: needs a class table and masks")
    by_name = {e.name.strip().lower(): e.id for e in index.spec.classes.entries}
    to_table = np.array([by_name.get(n.strip().lower(), -1) for n in vocab.names], dtype=np.int64)  # model id -> GT id
    model.eval()
    conf = Confusion.empty(index.spec.classes.max_id + 1)
    for sample in iter_split(index):
        label, _ = predict_image(model, sample["jpg"], device)  # type: ignore[arg-type]
        pred = to_table[np.clip(label, 0, len(to_table) - 1)]
        conf.update(sample[index.spec.masks[0].ext], pred, ignore_index=index.spec.classes.ignore_index)
    iou = conf.iou()
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0


def _checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, step: int,
                dl: Any, vocab: Vocabulary, cfg: Config) -> None:
    state = dl.state_dict()
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                           "step": step, "epoch": int(state["epoch"]), "loader": state, "rng": _rng_state(),
                           "vocab": list(vocab.names), "config": asdict(cfg)})
