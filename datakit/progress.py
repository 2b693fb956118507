"""A sample-counting progress bar (rich) that stays quiet when output is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import Any


class ProgressBar:
    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.done = total, 0
        self._t0 = time.perf_counter()
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False,
                auto_refresh=False,  # no refresh thread: worker pools may fork
            )
            self._last = 0.0
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, rate="")

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            rate = self.done / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:,.0f} samples/s")
            now = time.perf_counter()
            if now - self._last > 0.1 or self.done >= self.total:
                self._bar.refresh()
                self._last = now

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
