"""Training configs: a TOML (or YAML) file parsed into typed dataclasses; unknown keys, wrong types and
out-of-range values are refused with one line each, before anything is built.

Example (see ``configs/`` for the shipped recipes, each naming its source)::

    [[data]]
    path = "/data/a847/training"      # a split folder of datakit shards
    weight = 1.0                      # mixing weight
    labels = "pixel"                  # pixel (mask CE) | image (LarvSeg image-level loss) | pseudo
    [model]
    backbone = "vit_small_patch16_224"  # timm name, or "open_clip:ViT-B-16"
    head = "fcn"                      # linear | fcn
    num_convs = 2                     # fcn: conv blocks before the classifier (0 = dropout + 1x1 conv)
    [optim]
    lr = 1e-4
    layer_decay = 0.65                # ViT layer-wise LR decay (1.0 = off)
    [train]
    iterations = 2000
    batch_size = 8
    crop = 224
    label_downsample = 8              # loss on labels downsampled x8 (mmseg downsample_label_ratio)
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
    pretrained: str = ""  # "", "timm" (timm's own weights) or a checkpoint file (MAE, SERE, mmcls, DINO, ...)
    num_classes: int = 0  # 0: the union of the datasets' class tables (by name)
    head_channels: int = 256
    num_convs: int = 2  # fcn head: conv-BN-ReLU blocks (mmseg FCNHead num_convs; 0 = dropout + 1x1 conv only)
    dropout: float = 0.1
    drop_path: float = 0.0  # stochastic depth rate of ViT backbones
    freeze_backbone: bool = False  # train the head only; the backbone stays in eval mode (frozen BN), as a linear probe
    max_missing: float = 0.05  # pretrained file: refuse when more than this share of backbone weights is missing
    options: dict = field(default_factory=dict)  # extra keyword arguments for the backbone factory


@dataclass(frozen=True)
class OptimConfig:
    name: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    momentum: float = 0.9
    betas: tuple = (0.9, 0.999)
    schedule: str = "poly"
    warmup: int = 0  # linear warm-up iterations
    warmup_ratio: float = 0.0  # warm-up starts at lr * warmup_ratio (mmseg)
    min_lr: float = 0.0  # cosine / poly end value
    power: float = 0.9
    layer_decay: float = 1.0  # ViT layer-wise LR decay: block i gets decay ** (layers + 1 - i)
    head_lr_mult: float = 1.0
    decay_norm_bias: bool = True  # False: no weight decay on norms, biases, pos_embed and cls_token (mmseg recipes)
    clip_grad: float = 0.0  # max gradient norm (0 = off)
    milestones: tuple = ()  # schedule = "step": iterations where the LR is multiplied by gamma
    gamma: float = 0.1


@dataclass(frozen=True)
class AugConfig:
    scale: int = 0  # resize the short side to this first (0 = keep)
    ratio: tuple = (0.5, 2.0)  # random rescale range (mmseg ratio_range)
    hflip: float = 0.5
    photometric: bool = False  # mmseg PhotoMetricDistortion (brightness, contrast, saturation, hue)


@dataclass(frozen=True)
class TestConfig:
    """How whole images are predicted (in-training eval, and ``predict``'s defaults)."""

    resize_short: int = 0  # resize the short side to this, predict, resize logits back (0 = original size)
    max_res: int = 0  # images over max_res^2 pixels: predict at long side max_res, upsample ids (LUSSeg)
    mode: str = "whole"  # whole | slide
    crop: int = 0  # slide window (0 = train.crop)
    stride: int = 0  # slide stride (0 = 2/3 of the window)
    flip: bool = False  # average with the mirrored prediction


@dataclass(frozen=True)
class TrainConfig:
    out: str
    iterations: int
    batch_size: int = 8
    crop: int = 224
    seed: int = 0
    workers: int = 2
    amp: bool = True
    amp_dtype: str = "auto"  # auto (bf16 where supported, else fp16) | fp16 | bf16; bf16 also runs on CPU
    accumulate: int = 1  # micro-batches per optimizer step
    label_downsample: int = 1  # loss on labels downsampled by this factor (mmseg downsample_label_ratio)
    ema: float = 0.0  # EMA decay of the weights (0 = off); eval and predict then use the EMA weights
    sync_bn: bool = True  # SyncBatchNorm under DDP on GPUs
    label_space: str = "union"  # union: softmax over all classes | dataset: each dataset's own classes (LarvSeg)
    feed: str = "mix"  # mix: every rank reads all datasets | rank: rank r reads dataset r % n (LarvSeg)
    log_every: int = 10
    eval_every: int = 0
    eval_data: str = ""
    checkpoint_every: int = 0
    keep_last: int = 0  # also keep checkpoint-<step>.pt for the last N checkpoints
    save_best: bool = False  # best.pt: the weights of the best in-training eval mIoU
    tensorboard: bool = False
    device: str = "auto"


@dataclass(frozen=True)
class Config:
    data: tuple[DataConfig, ...]
    model: ModelConfig
    train: TrainConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    test: TestConfig = field(default_factory=TestConfig)
    source: str = ""  # where the recipe comes from (paper, config file); informational


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "optim": OptimConfig, "aug": AugConfig,
            "test": TestConfig}
CHOICES = {
    ("data", "labels"): {"pixel", "image", "pseudo"},
    ("model", "head"): {"linear", "fcn", "probe"},
    ("optim", "name"): {"adamw", "sgd"},
    ("optim", "schedule"): {"poly", "cosine", "constant", "step"},
    ("train", "amp_dtype"): {"auto", "fp16", "bf16"},
    ("train", "label_space"): {"union", "dataset"},
    ("train", "feed"): {"mix", "rank"},
    ("test", "mode"): {"whole", "slide"},
}


def _value(kind: Any, value: Any, where: str) -> Any:
    """``value`` checked against the field's type (ints pass as floats, lists as tuples)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) for v in value):
            raise InputError(f"{where}: expected a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if kind is dict and not isinstance(value, dict):
        raise InputError(f"{where}: expected a table, got {value!r}")
    if kind in (int, float, str, bool) and not (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        raise InputError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


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
        value = _value(hints[name], value, f"{where}.{name}")
        allowed = CHOICES.get((where.split("[")[0], name))
        if allowed and value not in allowed:
            raise InputError(f"{where}.{name}: {value!r} is not one of {sorted(allowed)}")
        values[name] = value
    return cls(**values)


def _positive(checks: dict[str, float | int], minimum: float, problem: str) -> None:
    for name, value in checks.items():
        if value < minimum:
            raise InputError(f"{name} = {value} {problem}")


def validate(cfg: Config) -> None:
    """Ranges and cross-field rules, each problem in one line."""
    t, o, m, a, s = cfg.train, cfg.optim, cfg.model, cfg.aug, cfg.test
    _positive({"train.iterations": t.iterations, "train.batch_size": t.batch_size, "train.log_every": t.log_every,
               "train.accumulate": t.accumulate, "train.label_downsample": t.label_downsample}, 1, "must be >= 1")
    _positive({"train.crop": t.crop}, 16, "must be >= 16")
    _positive({"train.workers": t.workers, "train.eval_every": t.eval_every, "train.checkpoint_every": t.checkpoint_every,
               "train.keep_last": t.keep_last, "model.num_classes": m.num_classes, "model.num_convs": m.num_convs,
               "optim.weight_decay": o.weight_decay, "optim.warmup": o.warmup, "optim.min_lr": o.min_lr,
               "optim.clip_grad": o.clip_grad, "aug.scale": a.scale, "test.resize_short": s.resize_short,
               "test.max_res": s.max_res, "test.crop": s.crop, "test.stride": s.stride}, 0, "must be >= 0")
    _positive({"optim.lr": o.lr, "optim.head_lr_mult": o.head_lr_mult, "optim.layer_decay": o.layer_decay}, 1e-300,
              "must be > 0")
    for name, value in {"train.ema": t.ema, "model.dropout": m.dropout, "model.drop_path": m.drop_path,
                        "model.max_missing": m.max_missing, "aug.hflip": a.hflip, "optim.warmup_ratio": o.warmup_ratio}.items():
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{name} = {value} must be between 0 and 1")
    if len(a.ratio) != 2 or not 0 < a.ratio[0] <= a.ratio[1]:
        raise InputError(f"aug.ratio = {list(a.ratio)} must be [low, high] with 0 < low <= high")
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise InputError(f"optim.betas = {list(o.betas)} must be two values in [0, 1)")
    if m.num_classes == 1:
        raise InputError("model.num_classes must be >= 2 (or 0: the datasets' union vocabulary)")
    if t.eval_every and not t.eval_data:
        raise InputError("train.eval_every needs train.eval_data (a split folder of shards with masks)")
    if t.save_best and not t.eval_every:
        raise InputError("train.save_best needs train.eval_every and train.eval_data")
    if t.feed == "rank" and len(cfg.data) < 2:
        raise InputError("train.feed = 'rank' needs at least two [[data]] sets (one per group of ranks)")


def parse_config(obj: dict[str, Any]) -> Config:
    """A checked Config from a parsed TOML/YAML mapping."""
    unknown = sorted(set(obj) - set(SECTIONS) - {"source"})
    if unknown:
        raise InputError(f"config: unknown section(s) {unknown}; allowed: {', '.join(SECTIONS)}, source")
    for section in ("data", "model", "train"):
        if section not in obj:
            raise InputError(f"config: missing section [{section}]")
    data = obj["data"] if isinstance(obj["data"], list) else [obj["data"]]
    if not data:
        raise InputError("config: [[data]] needs at least one dataset")
    source = obj.get("source", "")
    if not isinstance(source, str):
        raise InputError(f"config: source must be a string, got {source!r}")
    cfg = Config(
        data=tuple(_build(DataConfig, d, f"data[{i}]") for i, d in enumerate(data)),
        model=_build(ModelConfig, obj["model"], "model"),
        train=_build(TrainConfig, obj["train"], "train"),
        optim=_build(OptimConfig, obj.get("optim", {}), "optim"),
        aug=_build(AugConfig, obj.get("aug", {}), "aug"),
        test=_build(TestConfig, obj.get("test", {}), "test"),
        source=source,
    )
    validate(cfg)
    return cfg


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a TOML or YAML config file (one-line errors for missing or malformed files)."""
    p = Path(path)
    if not p.is_file():
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
            raise InputError(f"{path}: invalid YAML ({' '.join(str(err).split())})") from None
    else:
        try:
            obj = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"{path}: invalid TOML ({err})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: a config must be a table/mapping with [data], [model] and [train]")
    if isinstance(obj.get("data"), dict):  # a single YAML data mapping
        obj["data"] = [obj["data"]]
    return obj


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Parse a config file; ``overrides`` maps ``section.key`` to a value (e.g. ``train.out``)."""
    obj = read_mapping(path)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if section == "data":
            for d in obj.get("data", []):
                if isinstance(d, dict):
                    d[key] = value
            continue
        obj.setdefault(section, {})
        if not isinstance(obj[section], dict):
            raise InputError(f"config: [{section}] must be a table")
        obj[section][key] = value
    return parse_config(obj)


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain (JSON/TOML-able) form: tuples become lists."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def from_dict(obj: dict[str, Any]) -> Config:
    """The inverse of ``to_dict`` (a checkpoint's stored config), checked like a file."""
    return parse_config(dict(obj))
