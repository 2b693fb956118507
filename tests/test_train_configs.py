"""The shipped configs load, name their source, and run a few CPU steps with tiny stand-in backbones;
the pseudo-label source and ``datakit pseudolabel`` write shards the trainer reads back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.shards.index import load_index
from datakit.sources.demo import DemoSource
from datakit.train.config import load_config
from datakit.train.configs import configs_dir, list_configs, resolve_config
from datakit.train.loop import train

torch.set_num_threads(1)
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
SHIPPED = ["imagenets919-fcn-mae-base", "imagenets919-fcn-sere-small", "larvseg-a150-in21k", "zutis-coco80-vit-b16",
           "maskcontrast-linear-probe"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Demo splits, an image-level split (cls only), and that split with 0/1 pseudo-masks added."""
    from datakit.sources.imagefolder import folder_source as FolderSource
    from datakit.sources.pseudolabel import PseudoLabelSource

    root = tmp_path_factory.mktemp("data")
    build(DemoSource(16), root / "demo", None, BuildOptions(shard_size=8, workers=1, progress=False))
    imgs = root / "imgs"
    for name in ("wall", "sky"):
        (imgs / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((48, 64, 3), 40 * i + 20, np.uint8)).save(imgs / name / f"{i}.jpg")
    build(FolderSource(str(imgs), dataset="cls", classes=True), root / "cls", None, BuildOptions(workers=1, progress=False))
    cls_split = root / "cls" / "train"
    preds = root / "preds"
    preds.mkdir()
    from datakit.shards.reader import iter_split

    for s in iter_split(load_index(cls_split)):
        mask = np.zeros(s["jpg"].shape[:2], np.uint8)
        mask[10:30, 10:40] = 1
        Image.fromarray(mask, "L").save(preds / f"{s['__key__']}.png")
    source = PseudoLabelSource(str(cls_split), str(preds), "seg.png")
    assert source.records("train") == source.records("train")  # pure: equal calls, equal records
    build(source, root / "pseudo", ["train"], BuildOptions(workers=1, progress=False))
    return root


def test_every_shipped_config_loads_and_names_its_source():
    names = dict(list_configs())
    assert sorted(names) == sorted(SHIPPED)
    for name, source in names.items():
        assert len(source) > 20, name
        cfg = load_config(resolve_config(name))
        assert cfg.source == source
    mae = load_config(configs_dir() / "imagenets919-fcn-mae-base.toml")
    assert (mae.optim.layer_decay, mae.train.label_downsample, mae.model.num_convs, mae.model.drop_path) == (0.6, 8, 0, 0.1)
    assert (mae.train.iterations, mae.train.batch_size, mae.train.crop, mae.test.resize_short) == (3600, 32, 224, 256)
    assert (mae.optim.schedule, mae.optim.warmup, mae.optim.min_lr, mae.train.amp_dtype) == ("cosine", 180, 1e-6, "fp16")
    larv = load_config(configs_dir() / "larvseg-a150-in21k.toml")
    assert (larv.train.feed, larv.train.label_space, larv.data[1].labels) == ("rank", "dataset", "image")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_runs_a_few_cpu_steps(data, tmp_path, name):
    path = resolve_config(name)
    cfg = load_config(path)
    demo = data / "demo"
    paths = {"imagenets919-fcn-mae-base": [demo / "synthetic"], "imagenets919-fcn-sere-small": [demo / "synthetic"],
             "larvseg-a150-in21k": [demo / "ade150", data / "cls" / "train"], "zutis-coco80-vit-b16": [data / "pseudo" / "train"],
             "maskcontrast-linear-probe": [demo / "voc"]}[name]
    assert len(paths) == len(cfg.data)
    if cfg.model.backbone.startswith("open_clip:"):
        model = {"backbone": "open_clip:ViT-S-32-alt", "options": TINY_CLIP, "pretrained": ""}
    elif cfg.model.backbone.startswith("vit"):
        model = {"backbone": "vit_tiny_patch16_224", "options": {"depth": 1}, "pretrained": ""}
    else:
        model = {"backbone": "resnet18", "options": {}, "pretrained": ""}
    overrides = {f"model.{k}": v for k, v in model.items()}
    overrides.update({"train.out": str(tmp_path / "run"), "train.iterations": 2, "train.batch_size": 2, "train.crop": 64,
                      "train.workers": 0, "train.eval_every": 0, "train.eval_data": "", "train.checkpoint_every": 0,
                      "train.log_every": 1, "aug.scale": 0, "optim.warmup": 0})
    if cfg.train.feed == "rank":
        overrides["train.feed"] = "mix"  # one CPU process; two ranks are tested in test_train_ddp
    obj_cfg = load_config(path, overrides)
    obj_cfg = type(obj_cfg)(**{**obj_cfg.__dict__, "data": tuple(type(d)(**{**d.__dict__, "path": str(p)})
                                                                  for d, p in zip(obj_cfg.data, paths))})
    result = train(obj_cfg, log=lambda s: None)
    assert result.iterations == 2 and all(np.isfinite(result.losses))
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["config"]["source"] == cfg.source and state["step"] == 2
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2] and {"iter_time", "data_time", "eta_s"} <= set(lines[-1])


def test_pseudolabel_writes_shards_that_train_reads(data, tmp_path):
    """PASS: cluster -> pseudo-label -> fine-tune, end to end on the synthetic split."""
    from datakit.train.pseudo import PseudoOptions, pseudolabel

    demo = data / "demo" / "synthetic"
    first = load_config(resolve_config("imagenets919-fcn-sere-small"), {
        "model.backbone": "vit_tiny_patch16_224", "model.options": {"depth": 1}, "model.pretrained": "",
        "train.out": str(tmp_path / "stage1"), "train.iterations": 2, "train.batch_size": 2, "train.crop": 32,
        "train.workers": 0, "train.eval_every": 0, "train.eval_data": "", "train.checkpoint_every": 0, "aug.scale": 0,
        "train.label_downsample": 1, "test.resize_short": 0, "data.path": str(demo)})
    stage1 = train(first, log=lambda s: None)
    rep = pseudolabel(stage1.checkpoint, str(demo), str(tmp_path / "pseudo"), PseudoOptions("pseudo.png", "cpu"))
    index = load_index(tmp_path / "pseudo" / "synthetic")
    assert rep.samples == 16 and "pseudo.png" in index.spec.members() and "seg.png" in index.spec.members()
    from datakit.shards.reader import iter_split

    original = {s["__key__"]: s for s in iter_split(load_index(demo))}
    for s in iter_split(index):
        assert np.array_equal(s["seg.png"], original[s["__key__"]]["seg.png"])
        assert s["pseudo.png"].shape == s["seg.png"].shape and s["pseudo.png"].max() <= 3
    second = load_config(resolve_config("imagenets919-fcn-sere-small"), {
        "model.backbone": "vit_tiny_patch16_224", "model.options": {"depth": 1}, "model.pretrained": "",
        "train.out": str(tmp_path / "stage2"), "train.iterations": 2, "train.batch_size": 2, "train.crop": 32,
        "train.workers": 0, "train.eval_every": 0, "train.eval_data": "", "train.checkpoint_every": 0, "aug.scale": 0,
        "data.path": str(tmp_path / "pseudo" / "synthetic"), "data.mask": "pseudo.png"})
    assert train(second, log=lambda s: None).iterations == 2
