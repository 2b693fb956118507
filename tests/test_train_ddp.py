"""Two gloo ranks: LarvSeg feeding (one dataset per rank, per-dataset softmax), eval sharded over ranks,
loss averaged over ranks, and a resume that restores both datasets' loader positions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.sources.demo import DemoSource


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _run(cfg, *flags):
    port = _port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "datakit.cli.main", "train", str(cfg), *flags], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    return outs


@pytest.mark.slow
def test_rank_feeding_sharded_eval_and_resume(tmp_path):
    from datakit.sources.imagefolder import folder_source as FolderSource

    build(DemoSource(16), tmp_path / "demo", None, BuildOptions(shard_size=8, workers=1, progress=False))
    for name in ("wall", "sky"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((40, 40, 3), 50 * i, np.uint8)).save(tmp_path / "imgs" / name / f"{i}.jpg")
    build(FolderSource(str(tmp_path / "imgs"), dataset="cls", classes=True), tmp_path / "cls", None,
          BuildOptions(workers=1, progress=False))
    cfg = tmp_path / "larv.toml"
    cfg.write_text(f"""
[[data]]
path = "{tmp_path / 'demo' / 'ade150'}"
[[data]]
path = "{tmp_path / 'cls' / 'train'}"
labels = "image"
loss_weight = 0.2
[model]
backbone = "vit_tiny_patch16_224"
head = "linear"
options = {{ depth = 1 }}
[train]
out = "{tmp_path / 'run'}"
iterations = 2
batch_size = 1
crop = 32
workers = 0
log_every = 1
feed = "rank"
label_space = "dataset"
eval_every = 2
eval_data = "{tmp_path / 'demo' / 'voc'}"
""")
    outs = _run(cfg)
    assert "2 steps" in outs[0][0]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert [r["step"] for r in log if "eval_miou" in r] == [2]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    loaders = json.loads(state["loader"])
    assert len(loaders) == 2 and len(state["rng"]) == 2  # one position per dataset, one RNG per rank
    _run(cfg, "--resume", "--iterations", "4")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
