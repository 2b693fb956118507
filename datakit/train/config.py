"""Training configs: a TOML (or YAML) file parsed into typed dataclasses, unknown or missing keys refused.

Example::

    [[data]]
    path = "/data/a847/training"      # a split folder of datakit shards
    weight = 1.0                      # mixing weight
    labels = "pixel"                  # pixel (mask CE) | image (LarvSeg image-level loss) | pseudo (mask CE on pseudo-masks)
    [model]
    backbone = "vit_small_patch16_224"  # timm name, or "open_clip:ViT-B-16"
    head = "fcn"                      # linear | fcn
    [optim]
    lr = 1e-4
    [train]
    iterations = 2000
    batch_size = 8
    crop = 224
    out = "runs/a847"
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from ..errors import InputError


@dataclass(frozen=True)
class DataConfig:
    path: str
    weight: float = 1.0
    labels: str = "pixel"
    mask: str = "seg.png"
    loss_weight: float = 1.0
    fg_threshold: int = 127  # pseudo labels: foreground = mask value > threshold (0 for 0/1 masks)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str
    head: str = "fcn"
    pretrained: str = ""
    num_classes: int = 0  # 0: the union of the datasets' class tables (by name)
    head_channels: int = 256
    options: dict = field(default_factory=dict)  # extra keyword arguments for the backbone factory


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    momentum: float = 0.9
    schedule: str = "poly"
    warmup: int = 0
    power: float = 0.9


@dataclass(frozen=True)
class TrainConfig:
    out: str
    iterations: int
    batch_size: int = 8
    crop: int = 224
    seed: int = 0
    workers: int = 2
    amp: bool = True
    log_every: int = 10
    eval_every: int = 0
    eval_data: str = ""
    checkpoint_every: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class Config:
    data: tuple[DataConfig, ...]
    model: ModelConfig
    train: TrainConfig
    optim: OptimConfig = field(default_factory=OptimConfig)


CHOICES = {
    ("data", "labels"): {"pixel", "image", "pseudo"},
    ("model", "head"): {"linear", "fcn"},
    ("optim", "name"): {"adamw", "sgd"},
    ("optim", "schedule"): {"poly", "cosine", "constant"},
}


def _build(cls: type, obj: Any, where: str) -> Any:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a table, got {type(obj).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    missing = [n for n, f in fields.items() if n not in obj and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InputError(f"{where}: missing required key(s) {missing}")
    hints = get_type_hints(cls)
    values = {}
    for name, value in obj.items():
        kind = hints[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is dict and not isinstance(value, dict):
            raise InputError(f"{where}.{name}: expected a table, got {value!r}")
        if kind in (int, float, str, bool) and not (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
            raise InputError(f"{where}.{name}: expected {kind.__name__}, got {value!r}")
        allowed = CHOICES.get((where.split("[")[0], name))
        if allowed and value not in allowed:
            raise InputError(f"{where}.{name}: {value!r} is not one of {sorted(allowed)}")
        values[name] = value
    return cls(**values)


def parse_config(obj: dict[str, Any]) -> Config:
    unknown = sorted(set(obj) - {"data", "model", "train", "optim"})
    if unknown:
        raise InputError(f"config: unknown section(s) {unknown}; allowed: data, model, optim, train")
    for section in ("data", "model", "train"):
        if section not in obj:
            raise InputError(f"config: missing section [{section}]")
    data = obj["data"] if isinstance(obj["data"], list) else [obj["data"]]
    if not data:
        raise InputError("config: [[data]] needs at least one dataset")
    cfg = Config(
        data=tuple(_build(DataConfig, d, f"data[{i}]") for i, d in enumerate(data)),
        model=_build(ModelConfig, obj["model"], "model"),
        train=_build(TrainConfig, obj["train"], "train"),
        optim=_build(OptimConfig, obj.get("optim", {}), "optim"),
    )
    t = cfg.train
    if t.iterations < 1 or t.batch_size < 1 or t.crop < 16 or t.log_every < 1:
        raise InputError("train: iterations, batch_size and log_every must be >= 1 and crop >= 16")
    if t.workers < 0 or t.eval_every < 0 or t.checkpoint_every < 0 or cfg.model.num_classes < 0:
        raise InputError("train: workers, eval_every, checkpoint_every and model.num_classes must be >= 0")
    if t.eval_every and not t.eval_data:
        raise InputError("train: eval_every needs eval_data (a split folder of shards with masks)")
    return cfg


def load_config(path: str | Path) -> Config:
    p = Path(path)
    if not p.exists():
        raise InputError(f"config file not found: {path}")
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError("YAML configs need PyYAML (pip install pyyaml); or use TOML") from None
        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InputError(f"{path}: invalid YAML ({err})") from None
    else:
        try:
            obj = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"{path}: invalid TOML ({err})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: a config must be a table/mapping with [data], [model] and [train]")
    # the YAML data section is a list of dicts, TOML's [[data]] too; normalise
    data = obj.get("data")
    if isinstance(data, dict):
        obj["data"] = [data]
    return parse_config(obj)
