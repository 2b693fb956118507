"""``benchmarks/gpu_check.py`` in its tiny CPU mode: the device check's four sections run and report sane figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("open_clip")
pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_tiny_cpu_run_reports_all_four_sections(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert list(sections) == ["index", "retrieval", "training", "correctness"]
    assert not [name for name, s in sections.items() if "error" in s], json.dumps(sections, indent=1)[-3000:]
    index = sections["index"]
    assert index["images"] == 24 and index["failed"] == 0
    for key in ("forward_rate", "loader_rate", "index_rate", "index_steady_rate", "ratio", "ratio_end_to_end"):
        assert index[key] > 0, key
    assert index["ratio"] == pytest.approx(index["index_steady_rate"] / index["forward_rate"], rel=0.01, abs=1e-3)
    retrieval = sections["retrieval"]
    assert retrieval["sets_equal"] and retrieval["queries_with_equal_sets"] == retrieval["queries"] == 8
    assert retrieval["resident_seconds"] > 0 and retrieval["max_score_difference"] < 1e-4
    assert retrieval["differences_only_at_the_kth_score"]
    training = sections["training"]
    assert training["iterations"] == 6 and training["shards_rate"] > 0 and training["synthetic_rate"] > 0
    assert training["ddp"]["backend"] == "gloo" and training["ddp"]["ok"]
    correctness = sections["correctness"]
    assert correctness["images"]["images"] == 4 and correctness["images"]["min_cosine"] > 0.9999
    assert correctness["text"]["min_cosine"] > 0.9999  # fp32 both sides: the cut encoding equals the full one
    assert correctness["pytest_cuda"] == {"skipped": "no CUDA device"}
    assert report["environment"]["device"] == "cpu" and report["environment"]["cpus"] >= 1
    text = (tmp_path / "gpu_check.txt").read_text()
    for word in ("index:", "retrieval:", "training:", "correctness:"):
        assert word in text
