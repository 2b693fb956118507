"""The thin trainer on CPU with a tiny ViT: overfitting, exact resume, DDP (gloo), mixing, predictions."""

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
from datakit.errors import InputError
from datakit.eval.confusion import Confusion
from datakit.shards.index import load_index
from datakit.shards.reader import iter_split
from datakit.sources.demo import DemoSource
from datakit.train.config import load_config, parse_config
from datakit.train.losses import IGNORE, image_level_ce
from datakit.train.loop import train
from datakit.train.predict import encode_imagenets, load_trained, predict_image
from datakit.train.vocab import Vocabulary
from datakit.shards.spec import ClassTable

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    build(DemoSource(16), out, None, BuildOptions(shard_size=8, workers=1, progress=False))
    return out


def config(data, out, iterations, **train):
    cfg = {"data": data, "model": {"backbone": "vit_tiny_patch16_224", "head": "fcn", "head_channels": 32,
                                   "options": {"depth": 2}},
           "optim": {"lr": 2e-3, "schedule": "constant"},
           "train": {"out": str(out), "iterations": iterations, "batch_size": 2, "crop": 64, "workers": 0,
                     "log_every": 1, **train}}
    return parse_config(cfg)


def miou(checkpoint, split_dir):
    model, vocab = load_trained(checkpoint, torch.device("cpu"))
    index = load_index(split_dir)
    conf = Confusion.empty(len(vocab))
    for s in iter_split(index):
        img = np.asarray(Image.fromarray(s["jpg"]).resize((128, 96), Image.Resampling.BILINEAR))
        gt = np.asarray(Image.fromarray(s["seg.png"]).resize((128, 96), Image.Resampling.NEAREST))
        label, _ = predict_image(model, img, torch.device("cpu"))
        conf.update(gt, label, ignore_index=255)
    present = conf.area_gt > 0
    return float(np.mean(conf.iou()[present]))


def test_overfits_real_samples(demo, tmp_path):
    """Two real VOC images: the loss falls and the training-set mIoU rises."""
    cfg = config([{"path": str(demo / "voc")}], tmp_path / "run", 60, crop=96)
    result = train(cfg, log=lambda s: None)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.6 * first
    cfg0 = config([{"path": str(demo / "voc")}], tmp_path / "run0", 1)
    train(cfg0, log=lambda s: None)
    assert miou(result.checkpoint, demo / "voc") > miou(tmp_path / "run0" / "checkpoint.pt", demo / "voc") + 0.1
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 60 and {"loss", "lr", "samples_per_s"} <= set(lines[-1])


@pytest.mark.parametrize("stop", [3, 8])  # mid-epoch, and exactly at the end of epoch 0 (8 batches of 2)
def test_resumed_run_matches_uninterrupted(demo, tmp_path, stop):
    data = [{"path": str(demo / "synthetic")}]
    full = train(config(data, tmp_path / "full", 11), log=lambda s: None)
    train(config(data, tmp_path / "part", stop), log=lambda s: None)  # stops (as if killed) after its checkpoint
    resumed = train(config(data, tmp_path / "part", 11), resume=True, log=lambda s: None)
    assert len(resumed.losses) == 11 - stop
    np.testing.assert_allclose(resumed.losses, full.losses[stop:], rtol=1e-5, atol=1e-6)
    a = torch.load(full.checkpoint, weights_only=True)["model"]
    b = torch.load(resumed.checkpoint, weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_mixed_pixel_and_image_labels(demo, tmp_path):
    """LarvSeg-style: ADE pixel labels + image-level labels from another table, one union vocabulary."""
    from datakit.sources.imagefolder import folder_source as FolderSource

    root = tmp_path / "imgs"
    for name in ("wall", "sky"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((60, 80, 3), 40 * i, np.uint8)).save(root / name / f"{i}.jpg")
    build(FolderSource(str(root), dataset="cls", classes=True), tmp_path / "cls", None, BuildOptions(workers=1, progress=False))
    cfg = config([{"path": str(demo / "ade150")}, {"path": str(tmp_path / "cls" / "train"), "labels": "image", "weight": 1.0}],
                 tmp_path / "run", 6)
    result = train(cfg, log=lambda s: None)
    assert len(result.losses) == 6 and all(np.isfinite(result.losses))
    sources = {json.loads(line)["source"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()}
    assert sources == {0, 1}
    _, vocab = load_trained(result.checkpoint, torch.device("cpu"))
    assert len(vocab) == 150  # "wall" and "sky" merged into ADE's classes by name


def test_vocabulary_union_and_image_level_loss():
    a = ClassTable.from_names(["background", "cat", "dog"], 255)
    b = ClassTable.from_names(["Dog", "bird"], None)
    v = Vocabulary.union([a, b])
    assert v.names == ("background", "cat", "dog", "bird")
    assert v.map(1, np.array([0, 1, 7])).tolist() == [2, 3, IGNORE]
    assert v.map(0, np.array([255, 1])).tolist() == [IGNORE, 1]
    logits = torch.zeros(2, 4, 3, 3, requires_grad=True)
    loss = image_level_ce(logits, torch.tensor([2, IGNORE]))
    loss.backward()
    assert loss.item() == pytest.approx(np.log(4))
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 2].sum() < 0


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[data]]\npath = "x"\n[model]\nbackbone = "v"\nhead = "mlp"\n[train]\nout = "o"\niterations = 3\n')
    with pytest.raises(InputError, match="head"):
        load_config(bad)
    bad.write_text('[[data]]\npath = "x"\n[model]\nbackbone = "v"\n[train]\nout = "o"\n')
    with pytest.raises(InputError, match="missing required key"):
        load_config(bad)
    proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", "train", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "iterations" in proc.stderr and "Traceback" not in proc.stderr


def test_imagenets_prediction_encoding():
    label = np.array([[0, 1, 255], [256, 919, 1000]])
    rgb = np.asarray(Image.open(__import__("io").BytesIO(encode_imagenets(label))))
    assert np.array_equal(rgb[..., 0].astype(int) + 256 * rgb[..., 1].astype(int), label)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_run(demo, tmp_path):
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(f"""
[[data]]
path = "{demo / 'synthetic'}"
[model]
backbone = "vit_tiny_patch16_224"
head = "linear"
options = {{ depth = 1 }}
[train]
out = "{tmp_path / 'run'}"
iterations = 3
batch_size = 2
crop = 64
workers = 0
log_every = 1
""")
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "datakit.cli.main", "train", str(cfg)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "3 steps" in outs[0][0] and "3 steps" in outs[1][0]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # rank 0 logs alone


def test_predict_writes_the_official_imagenets_layout_and_evaluates(demo, tmp_path):
    from datakit.shards.index import make_index, write_index
    from datakit.shards.writer import ShardWriter
    from datakit.train.predict import PredictOptions, predict

    cfg = config([{"path": str(demo / "synthetic")}], tmp_path / "run", 2, eval_every=2, eval_data=str(demo / "synthetic"))
    result = train(cfg, log=lambda s: None)
    assert result.eval_miou is not None and 0.0 <= result.eval_miou <= 1.0
    spec = load_index(demo / "synthetic").spec
    split = tmp_path / "ins" / "validation"
    split.mkdir(parents=True)
    w = ShardWriter(split, "validation-000000", spec)
    img = np.asarray(Image.open("tests/fixtures/voc/JPEGImages/2007_000032.jpg"))
    w.write("n01443537_ILSVRC2012_val_00000236", img, {"seg.png": np.zeros(img.shape[:2], np.uint8)},
            meta={"wnid": "n01443537", "path": "n01443537/ILSVRC2012_val_00000236.JPEG"})
    write_index(split, make_index(spec, [w.close()], {}))
    rep = predict(result.checkpoint, str(split), str(tmp_path / "pred"), PredictOptions("imagenets"))
    out = tmp_path / "pred" / "n01443537" / "ILSVRC2012_val_00000236.png"
    assert rep.images == 1 and out.exists()
    with Image.open(out) as png:
        assert png.mode == "RGB" and png.size == (500, 281)
        ids = np.asarray(png)[..., 0].astype(int) + 256 * np.asarray(png)[..., 1].astype(int)
        assert ids.max() < 4
    predict(result.checkpoint, str(demo / "synthetic"), str(tmp_path / "png"), PredictOptions("png"))
    proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", "eval", "semseg", "--pred", str(tmp_path / "png"),
                           "--gt", str(demo / "synthetic"), "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["images"] == 16 and 0.0 <= result["metrics"]["mIoU"] <= 100.0
