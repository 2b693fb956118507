"""Load any open_clip model by name, with a pretrained tag, a local checkpoint file or a folder.

The loaded model carries an *identity* (name, weights, embedding size, preprocessing) that every
index part records, so parts made by different models are never mixed. OpenAI weights need the
``-quickgelu`` architecture; a plain name with such weights is switched and the switch is noted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

DEFAULT_MODEL = "ViT-L-14-336-quickgelu"
DEFAULT_PRETRAINED = "openai"
TINY_MODEL = "datakit-tiny"
RANDOM_INIT_SEED = 0

# OpenAI `clip.load` names (as ZUTIS writes them) -> open_clip architectures that match the weights.
OPENAI_NAMES = {
    "RN50": "RN50-quickgelu", "RN101": "RN101-quickgelu", "RN50x4": "RN50x4-quickgelu",
    "RN50x16": "RN50x16-quickgelu", "RN50x64": "RN50x64-quickgelu",
    "ViT-B/32": "ViT-B-32-quickgelu", "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu", "ViT-L/14@336px": "ViT-L-14-336-quickgelu",
}

# A tiny CLIP for tests and smoke runs: real open_clip code and the real BPE tokenizer, ~3.4 M params.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load: an open_clip name and ``pretrained`` = tag, checkpoint file, folder or None."""

    name: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    cache_dir: str | None = None
    preprocess_tag: str | None = None  # take preprocessing from this tag when loading a bare file


@dataclass
class LoadedModel:
    """A ready model with its eval transform, tokenizer and the identity recorded in indexes."""

    model: Any
    transform: Any
    tokenizer: Any
    identity: dict[str, Any]
    device: str
    precision: str
    notes: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.identity["dim"])


def register_tiny_model(name: str = TINY_MODEL, config: dict[str, Any] | None = None) -> str:
    """Add a small random-weight architecture to open_clip's registry (idempotent); returns its name."""
    import open_clip

    if name in open_clip.list_models():
        return name
    folder = Path(tempfile.mkdtemp(prefix="datakit-openclip-"))
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config or TINY_CONFIG))
    open_clip.add_model_config(path)
    return name


def select_device(requested: str = "auto") -> str:
    """``auto`` picks this rank's GPU when there is one; asking for a missing GPU is an error, not a fallback."""
    import torch

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if requested == "auto":
        return f"cuda:{local_rank % max(torch.cuda.device_count(), 1)}" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {requested} was asked for but torch sees no GPU (CUDA unavailable)")
        return f"cuda:{local_rank}" if requested == "cuda" else requested
    if requested != "cpu":
        raise InputError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    return "cpu"


def checkpoint_fingerprint(path: str | Path) -> str:
    """A cheap content fingerprint of a large checkpoint: its size and the hash of its first and last 8 MiB."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    chunk = 8 << 20
    with open(p, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:24]


def _is_torchscript(path: Path) -> bool:
    """OpenAI's .pt files are TorchScript archives (a zip with code and constants)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def _canonical_name(name: str, pretrained: str | None, notes: list[str]) -> str:
    """Map OpenAI names and plain names used with QuickGELU weights to the matching architecture."""
    import open_clip

    if name in OPENAI_NAMES:
        notes.append(f"model {name!r} is the OpenAI name of {OPENAI_NAMES[name]!r}")
        name = OPENAI_NAMES[name]
    if ":" in name or pretrained is None or name.endswith("-quickgelu"):
        return name
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) if not os.path.exists(pretrained) else {}
    model_cfg = open_clip.get_model_config(name) or {}
    if tag_cfg.get("quick_gelu", False) and not model_cfg.get("quick_gelu", False):
        alt = f"{name}-quickgelu"
        if alt in open_clip.list_models():
            notes.append(f"weights {pretrained!r} were trained with QuickGELU: using {alt!r} instead of {name!r}")
            return alt
    return name


def _tag_preprocess(name: str, tag: str | None) -> dict[str, Any]:
    """create_model keyword overrides that give a known tag's preprocessing."""
    import open_clip

    if not tag:
        return {}
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        raise InputError(f"--preprocess-tag {tag!r} is not a known tag of {name}")
    keys = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation", "resize_mode": "image_resize_mode"}
    return {arg: cfg[k] for k, arg in keys.items() if k in cfg}


def _file_preprocess(name: str, spec: ModelSpec, notes: list[str]) -> dict[str, Any]:
    """A bare weights file carries no preprocessing: use ``preprocess_tag``, or the model's only tag."""
    import open_clip

    if spec.preprocess_tag:
        return _tag_preprocess(name, spec.preprocess_tag)
    tags = open_clip.list_pretrained_tags_by_model(name)
    if len(tags) == 1:
        notes.append(f"preprocessing of a bare checkpoint taken from {name}'s only tag {tags[0]!r}")
        return _tag_preprocess(name, tags[0])
    if tags:
        notes.append(f"bare checkpoint: default preprocessing used; pass --preprocess-tag (one of {tags}) if it differs")
    return {}


@dataclass
class _Weights:
    """Where the weights come from, after resolving ``ModelSpec`` (folder, file, TorchScript, tag)."""

    name: str
    pretrained: str | None  # what open_clip gets
    recorded: str | None  # what the identity records
    checkpoint: str | None = None  # content fingerprint of a local checkpoint
    jit_file: Path | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def _from_folder(spec: ModelSpec) -> tuple[str, str | None]:
    """A ``--pretrained`` folder: an open_clip/HF-style folder (``local-dir:``) or a folder with one checkpoint."""
    from open_clip.factory import _find_checkpoint_in_dir

    folder = Path(str(spec.pretrained))
    if (folder / "open_clip_config.json").exists():
        return f"local-dir:{folder}", None
    found = _find_checkpoint_in_dir(folder)
    if found is None:
        raise InputError(f"--pretrained folder {folder} holds no open_clip_config.json and no checkpoint")
    return spec.name, found


def _resolve_weights(spec: ModelSpec, notes: list[str]) -> _Weights:
    """Turn a ModelSpec into what open_clip needs, checking tags and names first."""
    import open_clip
    from open_clip.factory import _find_checkpoint_in_dir

    name, pretrained = spec.name, spec.pretrained
    if pretrained and os.path.isdir(pretrained):
        name, pretrained = _from_folder(spec)
    if name.startswith("local-dir:"):
        folder = Path(name.split(":", 1)[1])
        found = _find_checkpoint_in_dir(folder) if folder.is_dir() else None
        recorded = spec.pretrained if spec.pretrained and os.path.isdir(spec.pretrained) else None
        return _Weights(name, None, recorded, checkpoint_fingerprint(found) if found else None)
    if pretrained and os.path.isfile(pretrained):
        name = _canonical_name(name, None, notes)
        ckpt = Path(pretrained)
        w = _Weights(name, pretrained, f"file:{ckpt.name}", checkpoint_fingerprint(ckpt))
        if _is_torchscript(ckpt):
            w.jit_file, w.pretrained = ckpt, None
            if not name.endswith("-quickgelu") and f"{name}-quickgelu" in open_clip.list_models():
                w.name = f"{name}-quickgelu"
                notes.append(f"TorchScript file = OpenAI weights: using {w.name!r}")
        w.kwargs = _file_preprocess(w.name, spec, notes)
        return w
    name = _canonical_name(name, pretrained, notes)
    if ":" in name:  # hf-hub:org/repo brings its own weights; a tag would be ignored
        return _Weights(name, None, None)
    if pretrained and not open_clip.get_pretrained_cfg(name, pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name) if name in open_clip.list_models() else []
        raise InputError(f"--pretrained {pretrained!r} is neither a file, a folder nor a tag of {name} (tags: {tags})")
    if name not in open_clip.list_models():
        raise InputError(f"unknown open_clip model {name!r} (see open_clip.list_models())")
    return _Weights(name, pretrained, pretrained)


def _create(w: _Weights, spec: ModelSpec, dev: str, prec: str) -> tuple[Any, Any]:
    """open_clip model + eval transform; TorchScript (OpenAI .pt) weights are loaded by hand."""
    import open_clip
    import torch

    if w.pretrained is None and w.jit_file is None and not w.name.startswith("local-dir:"):
        torch.manual_seed(RANDOM_INIT_SEED)  # random weights (tests, smoke runs) are the same in every run
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*QuickGELU mismatch.*")
        try:
            model, _, transform = open_clip.create_model_and_transforms(
                w.name, pretrained=w.pretrained, precision="fp32" if w.jit_file else prec,
                device="cpu" if w.jit_file else dev, cache_dir=spec.cache_dir, **w.kwargs)
        except (RuntimeError, FileNotFoundError, ValueError) as err:
            hint = " (offline? pass --pretrained /path/to/checkpoint or a folder)" if "download" in str(err).lower() else ""
            raise InputError(f"cannot load {w.name} / {spec.pretrained}: {err}{hint}") from None
    if w.jit_file is not None:
        state = torch.jit.load(str(w.jit_file), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size"):
            state.pop(key, None)
        model.load_state_dict(state)
        model = model.to(dev)
        if prec == "fp16":
            open_clip.model.convert_weights_to_lp(model, dtype=torch.float16)
    return model.eval(), transform


def load_model(spec: ModelSpec = ModelSpec(), device: str = "auto", precision: str = "auto") -> LoadedModel:
    """Create the model on ``device`` (fp16 on GPU by default, like OpenAI/ZUTIS; fp32 on CPU)."""
    import open_clip

    dev = select_device(device)
    prec = ("fp16" if dev.startswith("cuda") else "fp32") if precision == "auto" else precision
    if prec not in ("fp16", "fp32", "bf16"):
        raise InputError(f"unknown precision {precision!r}; use auto, fp16, bf16 or fp32")
    notes: list[str] = []
    w = _resolve_weights(spec, notes)
    model, transform = _create(w, spec, dev, prec)
    tokenizer = open_clip.get_tokenizer(w.name)
    pp = dict(model.visual.preprocess_cfg)
    identity = {
        "name": w.name,
        "pretrained": w.recorded,
        "checkpoint": w.checkpoint,
        "dim": _embed_dim(model, tokenizer, dev),
        "preprocess": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(pp.items())},
    }
    return LoadedModel(model, transform, tokenizer, identity, dev, prec, notes)


def config_identity(name: str, pretrained: str | None, dim: int) -> dict[str, Any]:
    """The identity ``load_model`` would record for a built-in model and tag, without creating it
    (used for embeddings made elsewhere, e.g. ZUTIS's pickles)."""
    import open_clip
    from open_clip.transform import PreprocessCfg

    name = OPENAI_NAMES.get(name, name)
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise InputError(f"unknown open_clip model {name!r}")
    pp: dict[str, Any] = dict(PreprocessCfg().__dict__)
    tag = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
    pp.update({k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag})
    size = cfg["vision_cfg"].get("image_size", 224)
    pp["size"] = list(size) if isinstance(size, (list, tuple)) else [size, size]
    return {"name": name, "pretrained": pretrained, "checkpoint": None, "dim": int(dim),
            "preprocess": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(pp.items())}}


def _embed_dim(model: Any, tokenizer: Any, device: str) -> int:
    """Embedding size, from the vision tower or by encoding one token."""
    dim = getattr(model.visual, "output_dim", None)
    if isinstance(dim, int):
        return dim
    import torch

    with torch.inference_mode():
        return int(model.encode_text(tokenizer(["a"]).to(device)).shape[-1])


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two identities describe the same weights and preprocessing."""
    keys = ("name", "checkpoint", "dim", "preprocess")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    return a.get("checkpoint") is not None or a.get("pretrained") == b.get("pretrained")


def describe(identity: dict[str, Any]) -> str:
    """Short human-readable form of an identity for messages."""
    return f"{identity.get('name')} / {identity.get('pretrained')} (dim {identity.get('dim')})"


def encode_images(loaded: LoadedModel, batch: Any, norm: Any = None) -> np.ndarray:
    """float16 L2-normalised image embeddings of a preprocessed batch (normalised in fp32). With ``norm`` (a
    ``loader.DeviceNorm``) the batch holds pixels in 0..255 (uint8, or float from device decoding) that are
    converted and normalised on the model's device."""
    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(loaded.precision, torch.float32)
    with torch.inference_mode():
        if norm is not None:
            x = norm(batch, loaded.device, dtype)
        elif batch.dtype == torch.uint8:
            raise ValueError("a uint8 image batch needs the normalisation that the transform left out")
        else:
            x = batch.to(loaded.device, dtype=dtype, non_blocking=True)
        feats = loaded.model.encode_image(x).float()
        feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return feats.to(torch.float16).cpu().numpy()
