"""Progress for long jobs, on a terminal or in a batch log.

On a terminal it is a rich bar. When stderr is not a terminal (SLURM, CI, ``2> log``) it prints one
line every ``interval`` seconds (30 by default, ``DATAKIT_PROGRESS_INTERVAL`` overrides):
``label: done/total (pct) rate/s, ETA``, and a last line when the job ends. No thread is started,
so worker pools may fork; lines are written from ``advance``, which executors call at least a few
times a second (``advance(0)`` is a tick).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

DEFAULT_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("DATAKIT_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def status_line(label: str, done: int, total: int, elapsed: float, unit: str = "samples") -> str:
    """One plain-text status: ``label: 1,200/5,000 (24%) 310 samples/s, ETA 0:12``."""
    rate = done / elapsed if elapsed > 0 else 0.0
    line = f"{label}: {done:,}/{total:,}" if total else f"{label}: {done:,}"
    if total:
        line += f" ({100.0 * done / total:.0f}%)"
    line += f" {rate:,.1f} {unit}/s"
    if total and rate > 0 and done < total:
        line += f", ETA {_duration((total - done) / rate)}"
    elif done >= total > 0:
        line += f", done in {_duration(elapsed)}"
    return line


class ProgressBar:
    """Counts ``done`` of ``total`` units; draws a bar on a terminal, prints status lines otherwise."""

    def __init__(self, total: int, label: str, enabled: bool = True, unit: str = "samples",
                 stream: TextIO | None = None) -> None:
        self.total, self.done, self.label, self.unit = total, 0, label, unit
        self._t0 = time.perf_counter()
        self._stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._lines = enabled and not self._stream.isatty()
        self._every = _interval()
        self._next_line = self._t0 + self._every
        self._last = 0.0
        if enabled and not self._lines:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False,
                auto_refresh=False,  # no refresh thread: worker pools may fork
                console=Console(file=self._stream),
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, rate="")

    def advance(self, n: int = 0) -> None:
        """Add ``n`` finished units; ``advance(0)`` only gives a status line a chance to print."""
        self.done += n
        now = time.perf_counter()
        if self._bar is not None:
            rate = self.done / max(now - self._t0, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f} {self.unit}/s")
            if now - self._last > 0.1 or self.done >= self.total:
                self._bar.refresh()
                self._last = now
        elif self._lines and now >= self._next_line:
            self._print(now)
            self._next_line = now + self._every

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def _print(self, now: float) -> None:
        print(status_line(self.label, self.done, self.total, now - self._t0, self.unit), file=self._stream, flush=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()
            self._bar = None
        elif self._lines:
            self._print(time.perf_counter())
            self._lines = False

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
