"""Resume safety, early config errors, run-folder protection, and the two issue #13 security items:
pickled code in checkpoints, and output paths built from shard keys / json members."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from datakit.pipeline import BuildOptions, build
from datakit.errors import CorruptShardError, InputError
from datakit.shards.index import load_index, make_index, write_index
from datakit.shards.writer import ShardWriter
from datakit.sources.demo import DemoSource
from datakit.train.config import parse_config
from datakit.train.loop import RunOptions, train

torch.set_num_threads(1)
QUIET = dict(log=lambda s: None)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    build(DemoSource(16), out, None, BuildOptions(shard_size=8, workers=1, progress=False))
    return out


def raw_config(data, out, iterations, **train):
    return {"data": [{"path": str(data)}],
            "model": {"backbone": "vit_tiny_patch16_224", "head": "linear", "options": {"depth": 1}},
            "optim": {"lr": 2e-3, "schedule": "constant"},
            "train": {"out": str(out), "iterations": iterations, "batch_size": 2, "crop": 32, "workers": 0,
                      "log_every": 1, **train}}


def cfg_of(data, out, iterations, **train):
    return parse_config(raw_config(data, out, iterations, **train))


def cli(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    return proc


def write_toml(path, obj):
    lines = ['source = "test"']
    for d in obj["data"]:
        lines += ["[[data]]"] + [f"{k} = {json.dumps(v)}" for k, v in d.items()]
    for section in ("model", "optim", "train"):
        lines.append(f"[{section}]")
        for k, v in obj.get(section, {}).items():
            if isinstance(v, dict):
                v = "{ " + ", ".join(f"{a} = {json.dumps(b)}" for a, b in v.items()) + " }"
                lines.append(f"{k} = {v}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- resume ------------------------------------------------------------------------------------------

def test_resume_refuses_a_changed_recipe_unless_allowed(demo, tmp_path):
    data = demo / "synthetic"
    train(cfg_of(data, tmp_path / "run", 2), **QUIET)
    for change in ({"batch_size": 4}, {"lr": 1e-2}):
        obj = raw_config(data, tmp_path / "run", 4)
        (obj["optim"] if "lr" in change else obj["train"]).update(change)
        with pytest.raises(InputError, match="allow-config-change") as err:
            train(parse_config(obj), resume=True, **QUIET)
        assert str(next(iter(change))) in str(err.value) and "\n" not in str(err.value)
    lines = []
    result = train(cfg_of(data, tmp_path / "run", 4), resume=True, log=lines.append)  # iterations may change
    assert result.iterations == 4 and any("resumed" in line for line in lines)
    obj = raw_config(data, tmp_path / "run", 5)
    obj["optim"]["lr"] = 1e-3
    assert train(parse_config(obj), opts=RunOptions(resume=True, allow_config_change=True), **QUIET).iterations == 5


@pytest.mark.slow
def test_changed_head_is_one_line_even_when_allowed(demo, tmp_path):
    data = demo / "synthetic"
    train(cfg_of(data, tmp_path / "run", 1), **QUIET)
    obj = raw_config(data, tmp_path / "run", 2)
    obj["model"]["head"] = "fcn"
    with pytest.raises(InputError, match="does not fit") as err:
        train(parse_config(obj), opts=RunOptions(resume=True, allow_config_change=True), **QUIET)
    assert "\n" not in str(err.value)
    proc = cli("train", write_toml(tmp_path / "c.toml", obj), "--resume", "--allow-config-change")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_resume_without_checkpoint_and_rerun_into_a_run_folder(demo, tmp_path):
    data = demo / "synthetic"
    with pytest.raises(InputError, match="no checkpoint"):
        train(cfg_of(data, tmp_path / "none", 2), resume=True, **QUIET)
    train(cfg_of(data, tmp_path / "run", 1), **QUIET)
    with pytest.raises(InputError, match="--resume"):
        train(cfg_of(data, tmp_path / "run", 1), **QUIET)
    result = train(cfg_of(data, tmp_path / "run", 2), opts=RunOptions(overwrite=True), **QUIET)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert result.iterations == 2 and steps == [1, 2]


def test_log_has_no_repeated_steps_after_a_resume(demo, tmp_path):
    data = demo / "synthetic"
    run = tmp_path / "run"
    train(cfg_of(data, run, 3, checkpoint_every=2), **QUIET)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    # as if killed after step 3's log line but with the step-2 checkpoint on disk
    ckpt2 = tmp_path / "c2"
    train(cfg_of(data, ckpt2, 2), **QUIET)
    (run / "checkpoint.pt").write_bytes((ckpt2 / "checkpoint.pt").read_bytes())
    train(cfg_of(data, run, 5), resume=True, **QUIET)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


# ---- validation before step 1 ------------------------------------------------------------------------

@pytest.mark.parametrize("section,key,value,expect", [
    ("model", "options", {"depth": 1, "no_such_option": 3}, "no_such_option"),
    ("optim", "lr", -0.1, "optim.lr"),
    ("train", "eval_data", "/no/such/split", "/no/such/split"),
])
def test_bad_config_is_one_line_before_step_one(demo, tmp_path, section, key, value, expect):
    obj = raw_config(demo / "synthetic", tmp_path / "run", 3, eval_every=2)
    obj["train"]["eval_data"] = str(demo / "synthetic")
    obj[section][key] = value
    proc = cli("train", write_toml(tmp_path / "c.toml", obj))
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expect in proc.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "log.jsonl").exists()


# ---- issue #13: checkpoints that run code --------------------------------------------------------------

class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_payload_is_refused_by_predict_and_resume(demo, tmp_path):
    data = demo / "synthetic"
    result = train(cfg_of(data, tmp_path / "run", 1), **QUIET)
    state = torch.load(result.checkpoint, weights_only=True)
    marker = tmp_path / "pwned"
    state["rng"] = Payload(marker)
    torch.save(state, result.checkpoint)
    from datakit.train.predict import PredictOptions, predict

    with pytest.raises(InputError, match="refused"):
        predict(result.checkpoint, str(data), str(tmp_path / "pred"), PredictOptions("png"))
    with pytest.raises(InputError, match="refused"):
        train(cfg_of(data, tmp_path / "run", 2), resume=True, **QUIET)
    proc = cli("predict", "--checkpoint", result.checkpoint, "--data", data, "--out", tmp_path / "p2")
    assert proc.returncode != 0 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_pretrained_file_with_a_payload_is_refused(tmp_path):
    from datakit.train.weights import read_state

    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.zeros(1)}, "x": Payload(marker)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="refused"):
        read_state(tmp_path / "bad.pth")
    assert not marker.exists()


# ---- issue #13: predict writes only under --out ---------------------------------------------------------

def _crafted_split(root, spec, samples):
    split = root / "crafted"
    split.mkdir(parents=True)
    w = ShardWriter(split, "crafted-000000", spec)
    img = np.zeros((20, 24, 3), np.uint8)
    for key, meta in samples:
        w.write(key, img, {"seg.png": np.zeros((20, 24), np.uint8)}, meta=meta)
    write_index(split, make_index(spec, [w.close()], {}))
    return split


@pytest.mark.parametrize("fmt,key,meta", [
    ("png", "../../escaped", {}),
    ("png", "/abs/escaped", {}),
    ("imagenets", "k1", {"wnid": "../../escaped", "path": "n01443537/x.JPEG"}),
    ("imagenets", "k2", {"wnid": "n01443537", "path": "../../../escaped.JPEG/.."}),
    ("imagenets", "k3", {"wnid": "/tmp", "path": "n01443537/x.JPEG"}),
])
def test_predict_never_writes_outside_out(demo, tmp_path, fmt, key, meta):
    from datakit.train.predict import PredictOptions, predict

    result = train(cfg_of(demo / "synthetic", tmp_path / "run", 1), **QUIET)
    spec = load_index(demo / "synthetic").spec
    try:
        split = _crafted_split(tmp_path / "data", spec, [(key, meta)])
    except (ValueError, InputError, OSError):
        pytest.skip(f"the shard writer itself refuses key {key!r}")
    before = set(tmp_path.rglob("*"))
    # the shard reader already refuses parent-relative member names; predict checks every target too
    with pytest.raises((InputError, CorruptShardError), match="not a plain name|outside|parent-relative"):
        predict(result.checkpoint, str(split), str(tmp_path / "sandbox" / "out"), PredictOptions(fmt))
    created = {p for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert not created, created
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "sandbox" / "escaped.png").exists()


def test_prediction_path_symlinked_out_of_out_is_refused(demo, tmp_path):
    from datakit.train.predict import PredictOptions, predict

    result = train(cfg_of(demo / "synthetic", tmp_path / "run", 1), **QUIET)
    spec = load_index(demo / "synthetic").spec
    split = _crafted_split(tmp_path / "data", spec, [("k1", {"wnid": "n01443537", "path": "n01443537/x.JPEG"})])
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "n01443537").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="outside"):
        predict(result.checkpoint, str(split), str(out), PredictOptions("imagenets"))
    assert not list((tmp_path / "elsewhere").iterdir())
