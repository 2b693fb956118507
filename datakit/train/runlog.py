"""What a run reports: console lines and ``log.jsonl`` on rank 0 (windowed iteration and data time, ETA,
loss averaged over ranks and over the window), optional TensorBoard scalars, and a progress bar /
batch-log status lines.

After a resume, ``log.jsonl`` is cut back to the checkpoint's step first, so no step appears twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import InputError
from ..io import atomic_write_text
from ..progress import ProgressBar, _duration

LOG = "log.jsonl"


def truncate_log(path: Path, step: int) -> None:
    """Keep only the records of steps <= ``step`` (a resumed run rewrites the later ones)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        if isinstance(rec, dict) and int(rec.get("step", 0)) <= step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("train.tensorboard = true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(out / "tensorboard"))


def check_tensorboard() -> None:
    """Fail before step 1 when TensorBoard logging is asked for but not installed."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise InputError("train.tensorboard = true needs the tensorboard package: pip install tensorboard")


class RunLog:
    """Rank 0 writes; every rank takes part in the loss average (one all-reduce per logged step)."""

    def __init__(self, out: Path, total: int, start: int, writer: bool, tensorboard: bool,
                 log: Callable[[str], None], world_size: int) -> None:
        self.total, self.step0, self.world = total, start, world_size
        self.write = writer
        self.log = log
        self.file = open(out / LOG, "a", encoding="utf-8") if writer else None
        self.tb = _tensorboard(out) if writer and tensorboard else None
        self.bar = ProgressBar(total, "training", enabled=writer, unit="steps")
        self.bar.done = start
        self._window: list[tuple[float, float, float]] = []  # (loss, iteration s, data s)
        self._t0 = time.perf_counter()
        self.seen = 0

    def step(self, loss: float, iter_s: float, data_s: float, samples: int) -> None:
        self._window.append((loss, iter_s, data_s))
        self.seen += samples
        self.bar.advance(1)

    def _mean_loss(self, device: torch.device) -> float:
        value = torch.tensor([sum(w[0] for w in self._window), float(len(self._window))], device=device, dtype=torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(value)
        return float(value[0] / value[1].clamp(min=1.0))

    def emit(self, step: int, epoch: int, lr: float, source: int | None, device: torch.device) -> None:
        """One record for the window since the last one (every rank must call this at the same steps)."""
        if not self._window:
            return
        loss = self._mean_loss(device)
        iter_s = sum(w[1] for w in self._window) / len(self._window)
        data_s = sum(w[2] for w in self._window) / len(self._window)
        self._window = []
        if not self.write:
            return
        rate = self.seen * self.world / max(time.perf_counter() - self._t0, 1e-9)
        eta = iter_s * (self.total - step)
        rec = {"step": step, "epoch": epoch, "loss": round(loss, 6), "lr": lr, "iter_time": round(iter_s, 4),
               "data_time": round(data_s, 4), "eta_s": round(eta, 1), "samples_per_s": round(rate, 2)}
        if source is not None:
            rec["source"] = source
        self.record(rec)
        self.log(f"step {step}/{self.total} loss {loss:.4f} lr {lr:.2e} time {iter_s:.3f}s data {data_s:.3f}s "
                 f"{rate:.1f} samples/s ETA {_duration(eta)}")
        if self.tb is not None:
            for key in ("loss", "lr", "iter_time", "data_time"):
                self.tb.add_scalar(f"train/{key}", rec[key], step)

    def record(self, rec: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()
        if self.tb is not None and "eval_miou" in rec:
            self.tb.add_scalar("eval/mIoU", rec["eval_miou"], rec["step"])

    @property
    def samples_per_s(self) -> float:
        return self.seen * self.world / max(time.perf_counter() - self._t0, 1e-9)

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
