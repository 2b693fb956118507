"""The training loop: shards in through the streaming loader, losses by label kind, checkpoints that
include the loader's position and every rank's RNG (a resumed run continues exactly), logs on rank 0.

``train`` checks everything first (data, eval split, output folder, checkpoint and its config), then
runs steps; each phase is a method of ``Trainer``: ``restore``, ``step``, ``log``, ``evaluate``,
``checkpoint``.
"""

from __future__ import annotations

import contextlib
import copy
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..shards.index import SplitIndex, load_index
from .checkpoint import config_changes, config_hash, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import Config, to_dict
from .distributed import pick_device, setup_distributed, sync_batchnorm
from .evaluation import eval_split, evaluate
from .feed import Feed, batch_targets, gather_states, make_feed, restore_state
from .infer import InferOptions
from .losses import downsample_labels, segmentation_loss
from .model import build_model
from .optim import learning_rate, make_optimizer, set_lr
from .runlog import LOG, RunLog, check_tensorboard, truncate_log
from .vocab import Vocabulary

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
FORMAT = "datakit.train/2"


@dataclass
class TrainResult:
    iterations: int
    losses: list[float]
    checkpoint: str
    samples_per_s: float
    eval_miou: float | None = None


@dataclass(frozen=True)
class RunOptions:
    """``resume``: continue <out>/checkpoint.pt; ``allow_config_change``: resume under a changed config;
    ``overwrite``: replace a finished or interrupted run in <out>."""

    resume: bool = False
    allow_config_change: bool = False
    overwrite: bool = False


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    best: float | None = None
    eval_miou: float | None = None
    losses: list[float] = field(default_factory=list)


def _indexes(cfg: Config) -> list[SplitIndex]:
    indexes = [load_index(d.path) for d in cfg.data]
    for ix, d in zip(indexes, cfg.data):
        if ix.spec.classes is None:
            raise InputError(f"{d.path}: the index has no class table; the trainer needs one")
    return indexes


def check_out(out: Path, opts: RunOptions) -> None:
    """Refuse to silently overwrite a run, or to resume one that is not there (every rank checks)."""
    ckpt = out / CHECKPOINT
    if opts.resume:
        if opts.overwrite:
            raise InputError("--resume and --overwrite contradict each other; give one")
        if not ckpt.is_file():
            raise InputError(f"--resume: no checkpoint at {ckpt}; start without --resume (or fix train.out)")
        return
    if (ckpt.exists() or (out / LOG).exists()) and not opts.overwrite:
        raise InputError(f"{out} already holds a run ({CHECKPOINT} / {LOG}); continue it with --resume, "
                         "replace it with --overwrite, or choose another train.out")


def clear_out(out: Path) -> None:
    """--overwrite: remove the previous run's checkpoints, log and TensorBoard files (rank 0)."""
    for old in [out / CHECKPOINT, out / LOG, out / BEST, *out.glob("checkpoint-*.pt")]:
        old.unlink(missing_ok=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)


class Trainer:
    """One run on this rank: model, optimizer, loader, and the phases of a step."""

    def __init__(self, cfg: Config, opts: RunOptions, log: Callable[[str], None]) -> None:
        self.cfg, self.opts, self.log = cfg, opts, log
        self.dist = setup_distributed()
        device = pick_device(cfg.train.device)
        self.device = torch.device("cuda", self.dist.local_rank) if device.type == "cuda" and self.dist.world_size > 1 else device
        self.indexes = _indexes(cfg)
        self.eval_index = eval_split(cfg.train.eval_data) if cfg.train.eval_data else None
        if cfg.train.tensorboard:
            check_tensorboard()
        self.out = Path(cfg.train.out)
        check_out(self.out, opts)
        if opts.overwrite and self.dist.rank == 0:
            clear_out(self.out)
        self.state = load_checkpoint(self.out / CHECKPOINT) if opts.resume else None
        if self.state is not None:
            self._check_config(self.state)
        torch.manual_seed(cfg.train.seed + self.dist.rank)  # ranks draw different dropout masks
        np.random.seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        self.vocab = Vocabulary.union([ix.spec.classes for ix in self.indexes])  # type: ignore[misc]
        num_classes = cfg.model.num_classes or len(self.vocab.names)
        if num_classes < len(self.vocab.names):
            raise InputError(f"model.num_classes={num_classes} is smaller than the datasets' {len(self.vocab.names)} classes")
        model = build_model(cfg.model, num_classes, log=self._say)
        model = sync_batchnorm(model, self.dist, self.device, cfg.train.sync_bn)
        self.model = model.to(self.device)
        self.optimizer = make_optimizer(cfg, self.model)
        self.amp_dtype, self.use_amp = self._precision()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.ema: dict[str, torch.Tensor] | None = None
        self.progress = Progress()
        self.infer = InferOptions.of(cfg.test, cfg.train.crop)

    # -- setup -------------------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        if self.dist.rank == 0:
            self.log(line)

    def _precision(self) -> tuple[torch.dtype, bool]:
        t = self.cfg.train
        if not t.amp:
            return torch.float32, False
        if self.device.type == "cuda":
            bf16 = t.amp_dtype == "bf16" or (t.amp_dtype == "auto" and torch.cuda.is_bf16_supported())
            return (torch.bfloat16 if bf16 else torch.float16), True
        return torch.bfloat16, t.amp_dtype == "bf16"  # CPU autocast only when bf16 is asked for

    def _check_config(self, state: dict[str, Any]) -> None:
        changes = config_changes(state["config"], to_dict(self.cfg))
        if changes and not self.opts.allow_config_change:
            raise InputError(f"--resume with a changed config ({'; '.join(changes[:4])}"
                             f"{'; ...' if len(changes) > 4 else ''}); only train.iterations may change: "
                             "restore the config, or pass --allow-config-change")
        if changes:
            self._say(f"resuming under a changed config: {'; '.join(changes)}")

    # -- restore -----------------------------------------------------------------------------------
    def restore(self) -> None:
        """Weights, optimizer, scaler, EMA, step and RNG from the checkpoint (before the loader is made)."""
        state = self.state
        if state is None:
            return
        if list(state["vocab"]) != list(self.vocab.names):
            raise InputError(f"{self.out / CHECKPOINT}: written for another class vocabulary; refusing to resume")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise InputError(f"{self.out / CHECKPOINT} does not fit this model (backbone, head or optimizer groups "
                             f"changed): {str(err).strip().splitlines()[0][:160]}") from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.ema = state.get("ema")
        self.progress.step, self.progress.best = int(state["step"]), state.get("best")
        rngs = state["rng"]
        set_rng_state(rngs[self.dist.rank] if len(rngs) == self.dist.world_size else rngs[0])
        if self.dist.rank == 0:
            truncate_log(self.out / LOG, self.progress.step)
        self._say(f"resumed from {self.out / CHECKPOINT} at step {self.progress.step}")

    def make_feed(self) -> Feed:
        feed = make_feed(self.cfg, self.indexes, self.dist, 0)
        if self.state is not None:
            self.progress.epoch = restore_state(feed, self.cfg, self.state["loader"])
        self.state = None  # free the loaded tensors
        return feed

    # -- step --------------------------------------------------------------------------------------
    def batches(self, feed: Feed) -> Iterator[dict[str, Any]]:
        """Batches forever, epoch after epoch (``set_epoch`` at each boundary)."""
        while True:
            progressed = False
            for batch in feed.loader:
                progressed = True
                yield batch
            if not progressed:
                raise InputError("the training data yielded no batch (fewer samples than one global batch?)")
            self.progress.epoch += 1
            feed.loader.set_epoch(self.progress.epoch)

    def _micro(self, net: nn.Module, batch: dict[str, Any], feed: Feed) -> tuple[torch.Tensor, int]:
        """Forward and loss of one micro-batch; returns (loss, source dataset)."""
        src = feed.dataset if feed.dataset is not None else int(batch["__source__"][0])  # a rank's own dataset, or the mix's
        kind, target = batch_targets(self.cfg, self.vocab, batch, src, self.indexes[src].spec.ignore_id)
        images = batch["image"].permute(0, 3, 1, 2).to(self.device, non_blocking=True)
        ratio = self.cfg.train.label_downsample
        size = None if ratio <= 1 else (images.shape[2] // ratio, images.shape[3] // ratio)
        target = (downsample_labels(target, ratio) if kind == "pixel" else target).to(self.device)
        keep = torch.from_numpy(self.vocab.members(src)).to(self.device) if self.cfg.train.label_space == "dataset" else None
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            logits = net(images, size) if size is not None else net(images)
        loss = segmentation_loss(logits, kind, target, keep) * self.cfg.data[src].loss_weight
        return loss, src

    def step(self, net: nn.Module, batches: Iterator[dict[str, Any]], feed: Feed) -> tuple[float, int, float]:
        """One optimizer step over ``accumulate`` micro-batches; returns (loss, source, data seconds)."""
        t = self.cfg.train
        set_lr(self.optimizer, learning_rate(self.cfg, self.progress.step))
        self.optimizer.zero_grad(set_to_none=True)
        total, data_s, src = 0.0, 0.0, 0
        for micro in range(t.accumulate):
            t0 = time.perf_counter()
            batch = next(batches)
            data_s += time.perf_counter() - t0
            sync = micro == t.accumulate - 1 or not isinstance(net, nn.parallel.DistributedDataParallel)
            with (net.no_sync() if not sync else contextlib.nullcontext()):  # type: ignore[operator]
                loss, src = self._micro(net, batch, feed)
                self.scaler.scale(loss / t.accumulate).backward()
            total += float(loss.detach()) / t.accumulate
        if self.cfg.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._update_ema()
        return total, src, data_s

    def _update_ema(self) -> None:
        decay = self.cfg.train.ema
        if not decay:
            return
        current = self.model.state_dict()
        if self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in current.items()}
            return
        with torch.no_grad():
            for k, v in current.items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
                else:
                    self.ema[k].copy_(v)

    # -- evaluate / checkpoint --------------------------------------------------------------------
    def eval_model(self) -> nn.Module:
        if self.ema is None:
            return self.model
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.ema)
        return model

    def evaluate(self, runlog: RunLog) -> None:
        assert self.eval_index is not None
        miou = evaluate(self.eval_model(), self.eval_index, self.vocab.names, self.device, self.infer, self.dist)
        p = self.progress
        p.eval_miou = miou
        runlog.record({"step": p.step, "eval_miou": round(miou, 6)})
        self._say(f"step {p.step}: eval mIoU {100 * miou:.2f}")
        if self.cfg.train.save_best and (p.best is None or miou > p.best):
            p.best = miou
            if self.dist.rank == 0:
                save_checkpoint(self.out / BEST, self.payload("", [rng_state()]))
                self._say(f"best mIoU so far: wrote {self.out / BEST}")

    def payload(self, loader: str, rngs: list[Any]) -> dict[str, Any]:
        config = to_dict(self.cfg)
        return {"format": FORMAT, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "ema": self.ema, "step": self.progress.step,
                "epoch": self.progress.epoch, "loader": loader, "rng": rngs, "vocab": list(self.vocab.names),
                "config": config, "config_hash": config_hash(config), "best": self.progress.best}

    def checkpoint(self, feed: Feed) -> None:
        """Collective (every rank calls it): gathers loader positions and RNG states; rank 0 writes."""
        loader = gather_states(feed, self.cfg, self.dist)
        rngs: list[Any] = [rng_state()]
        if self.dist.world_size > 1:
            rngs = [None] * self.dist.world_size
            torch.distributed.all_gather_object(rngs, rng_state())
        if self.dist.rank != 0:
            return
        save_checkpoint(self.out / CHECKPOINT, self.payload(loader, rngs))
        keep = self.cfg.train.keep_last
        if keep:
            shutil.copyfile(self.out / CHECKPOINT, self.out / f"checkpoint-{self.progress.step:07d}.pt")
            for old in sorted(self.out.glob("checkpoint-*.pt"))[:-keep]:
                old.unlink(missing_ok=True)


def run(trainer: Trainer) -> TrainResult:
    """The loop: step, log every ``log_every``, evaluate every ``eval_every``, checkpoint every
    ``checkpoint_every`` and at the end."""
    cfg, p = trainer.cfg, trainer.progress
    trainer.out.mkdir(parents=True, exist_ok=True)
    trainer.restore()
    feed = trainer.make_feed()
    net: nn.Module = trainer.model
    if trainer.dist.world_size > 1:
        dev = trainer.device
        net = nn.parallel.DistributedDataParallel(trainer.model, device_ids=[dev.index] if dev.type == "cuda" else None)
    runlog = RunLog(trainer.out, cfg.train.iterations, p.step, trainer.dist.rank == 0, cfg.train.tensorboard,
                    trainer.log, trainer.dist.world_size)
    net.train()
    batches = trainer.batches(feed)
    try:
        while p.step < cfg.train.iterations:
            t0 = time.perf_counter()
            loss, src, data_s = trainer.step(net, batches, feed)
            p.step += 1
            p.losses.append(loss)
            runlog.step(loss, time.perf_counter() - t0, data_s, cfg.train.batch_size * cfg.train.accumulate)
            last = p.step == cfg.train.iterations
            if p.step % cfg.train.log_every == 0 or last:
                lr = trainer.optimizer.param_groups[-1]["lr"] / trainer.optimizer.param_groups[-1].get("lr_scale", 1.0)
                runlog.emit(p.step, p.epoch, lr, src, trainer.device)
            if trainer.eval_index is not None and cfg.train.eval_every and (p.step % cfg.train.eval_every == 0 or last):
                trainer.evaluate(runlog)
                net.train()
            if last or (cfg.train.checkpoint_every and p.step % cfg.train.checkpoint_every == 0):
                trainer.checkpoint(feed)
    finally:
        runlog.close()
    return TrainResult(p.step, p.losses, str(trainer.out / CHECKPOINT), runlog.samples_per_s, p.eval_miou)


def train(cfg: Config, resume: bool = False, log: Callable[[str], None] = print,
          opts: RunOptions | None = None) -> TrainResult:
    """Run (or resume) the training described by ``cfg``; returns the per-step losses and the checkpoint path."""
    options = opts if opts is not None else RunOptions(resume=resume)
    return run(Trainer(cfg, options, log))
