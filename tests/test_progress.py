"""Batch jobs show progress: with stderr redirected to a file (SLURM, CI), the long commands write
status lines ``label: done/total (pct) rate, ETA`` into it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from datakit.progress import ProgressBar, status_line

FIX = Path(__file__).parent / "fixtures"
LINE = re.compile(r"^[\w /.-]+: [\d,]+/[\d,]+ \(\d+%\) [\d,.]+ \w+/s")


def run_logged(tmp_path: Path, *args: str) -> str:
    log = tmp_path / "job.err"
    env = {**os.environ, "DATAKIT_PROGRESS_INTERVAL": "0"}
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", *args], stderr=err, stdout=subprocess.DEVNULL,
                              env=env, cwd=tmp_path)
    assert proc.returncode == 0, log.read_text()
    return log.read_text()


def test_build_convert_verify_and_stats_leave_status_lines_in_a_log(tmp_path):
    text = run_logged(tmp_path, "build", "demo", "--out", "d", "-p", "synthetic=40", "-w", "1", "--shard-size", "8")
    lines = [ln for ln in text.splitlines() if ln.startswith("demo: ")]
    assert len(lines) >= 2 and all(LINE.match(ln) for ln in lines), text
    assert lines[-1].startswith("demo: 45/45 (100%)") and "done in" in lines[-1]
    text = run_logged(tmp_path, "convert", "ade150", "--src", str(FIX / "ade20k"), "--out", "a", "-w", "1")
    assert any(LINE.match(ln) and ln.startswith("ade150: ") for ln in text.splitlines()), text
    text = run_logged(tmp_path, "verify", "d", "-w", "1")
    assert any(ln.startswith("verify demo/synthetic: 40/40 (100%)") for ln in text.splitlines()), text
    text = run_logged(tmp_path, "stats", "d", "-w", "1")
    assert any(LINE.match(ln) for ln in text.splitlines()), text


def test_status_lines_carry_rate_and_eta():
    assert status_line("build", 250, 1000, 10.0) == "build: 250/1,000 (25%) 25.0 samples/s, ETA 0:30"
    assert status_line("build", 1000, 1000, 40.0, "images") == "build: 1,000/1,000 (100%) 25.0 images/s, done in 0:40"


def test_a_bar_prints_every_interval_not_every_step(monkeypatch):
    monkeypatch.setenv("DATAKIT_PROGRESS_INTERVAL", "3600")
    sink = io.StringIO()
    with ProgressBar(100, "quiet", True, stream=sink) as bar:
        for _ in range(100):
            bar.advance(1)
    assert sink.getvalue().splitlines() == [sink.getvalue().strip()]  # only the closing line within the hour
    assert sink.getvalue().startswith("quiet: 100/100 (100%)")
