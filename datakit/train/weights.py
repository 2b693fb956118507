"""Pretrained backbone files as users have them: MAE, SERE/DINO, mmcls/mmseg conversions, timm saves.

A file is read with ``weights_only=True`` (a pickle that runs code is refused), unwrapped
(``model`` / ``state_dict`` / ``teacher`` / ``module`` ...), stripped of ``module.`` and ``backbone.``
prefixes, its mmcls/mmseg ViT key names converted to timm's, decoder and classifier weights dropped,
and its position embedding resampled to the model's grid. What did not load is reported in one
line; more than ``max_missing`` of the backbone's tensors missing is an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import InputError

WRAPPERS = ("state_dict", "model", "teacher", "module", "model_ema", "encoder")
PREFIXES = ("module.", "backbone.", "encoder.")
DROPPED = re.compile(r"^(decoder|mask_token|head\.|heads\.|fc\.|pre_logits|decode_head|auxiliary_head|neck|projector|"
                     r"student|classifier|dist_token)")
# mmcls / mmseg VisionTransformer names -> timm's (applied in order, first match wins)
RENAMES = (
    (re.compile(r"^patch_embed\.projection\."), "patch_embed.proj."),
    (re.compile(r"^layers\.(\d+)\.ln1\."), r"blocks.\1.norm1."),
    (re.compile(r"^layers\.(\d+)\.ln2\."), r"blocks.\1.norm2."),
    (re.compile(r"^layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$"), r"blocks.\1.attn.qkv.\2"),
    (re.compile(r"^layers\.(\d+)\.attn\.attn\.out_proj\."), r"blocks.\1.attn.proj."),
    (re.compile(r"^layers\.(\d+)\.attn\."), r"blocks.\1.attn."),
    (re.compile(r"^layers\.(\d+)\.ffn\.layers\.0\.0\."), r"blocks.\1.mlp.fc1."),
    (re.compile(r"^layers\.(\d+)\.ffn\.layers\.1\."), r"blocks.\1.mlp.fc2."),
    (re.compile(r"^layers\.(\d+)\.gamma_1$"), r"blocks.\1.ls1.gamma"),
    (re.compile(r"^layers\.(\d+)\.gamma_2$"), r"blocks.\1.ls2.gamma"),
    (re.compile(r"^blocks\.(\d+)\.gamma_1$"), r"blocks.\1.ls1.gamma"),  # BEiT / MAE layer scale
    (re.compile(r"^blocks\.(\d+)\.gamma_2$"), r"blocks.\1.ls2.gamma"),
    (re.compile(r"^ln1\."), "norm."),  # mmcls/mmseg final norm
)


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (.pt/.pth/.bin with weights_only=True, or .safetensors)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"pretrained backbone file not found: {path}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    from .checkpoint import UNREADABLE, reason

    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except UNREADABLE as err:
        raise InputError(f"{path}: refused: {reason(err)}") from None
    return unwrap(obj, str(path))


def unwrap(obj: Any, label: str) -> dict[str, torch.Tensor]:
    """The tensor mapping inside wrapper dicts (``{'model': {...}}``, DINO's ``{'teacher': ...}``, ...)."""
    for _ in range(4):
        if not isinstance(obj, dict):
            break
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    raise InputError(f"{label}: no tensors found (expected a state dict, possibly under 'model', 'state_dict' or 'teacher')")


def convert_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes, drop non-backbone weights, rename mmcls/mmseg/BEiT keys to timm's."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        stripped = True
        while stripped:
            stripped = False
            for prefix in PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], True
        if DROPPED.match(name):
            continue
        for pattern, repl in RENAMES:
            if pattern.match(name):
                name = pattern.sub(repl, name)
                break
        out[name] = value
    if "norm.weight" not in out and "fc_norm.weight" in out:  # MAE fine-tuned (global pool): its final norm
        out["norm.weight"], out["norm.bias"] = out.pop("fc_norm.weight"), out.pop("fc_norm.bias")
    out.pop("fc_norm.weight", None)
    out.pop("fc_norm.bias", None)
    return out


def _fit_pos_embed(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], prefix: int) -> None:
    """Resample a checkpoint's pos_embed to the model's token grid (bicubic), keeping its class token."""
    pos, want = state.get("pos_embed"), target.get("pos_embed")
    if pos is None or want is None or pos.shape == want.shape:
        return
    from .posembed import resample_pos_embed

    n_new = want.shape[1] - prefix
    side = int(round(n_new**0.5))
    src_prefix = prefix if int(round((pos.shape[1] - prefix) ** 0.5)) ** 2 == pos.shape[1] - prefix else 0
    body = resample_pos_embed(pos, (side, n_new // side), src_prefix)
    if src_prefix < prefix:  # the checkpoint has no class-token position: give it zeros
        body = torch.cat([torch.zeros(1, prefix - src_prefix, body.shape[2]), body], dim=1)
    state["pos_embed"] = body


def _few(keys: list[str]) -> str:
    """`` (a, b, c, d, ...)`` for a report line."""
    return f" ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})" if keys else ""


def load_backbone_weights(net: nn.Module, path: str, max_missing: float = 0.05,
                          log: Callable[[str], None] | None = None) -> tuple[list[str], list[str]]:
    """Load a pretrained file into a timm backbone; returns (missing, unexpected) key lists."""
    target = net.state_dict()
    state = convert_keys(read_state(path))
    _fit_pos_embed(state, target, int(getattr(net, "num_prefix_tokens", 1)))
    mismatched = sorted(k for k, v in state.items() if k in target and tuple(v.shape) != tuple(target[k].shape))
    usable = {k: v for k, v in state.items() if k in target and k not in mismatched}
    missing = sorted(set(target) - set(usable))
    unexpected = sorted(set(state) - set(target)) + mismatched
    net.load_state_dict(usable, strict=False)
    share = len(missing) / max(len(target), 1)
    line = (f"pretrained {path}: loaded {len(usable)}/{len(target)} tensors; missing {len(missing)}{_few(missing)}; "
            f"unexpected {len(unexpected)}{_few(unexpected)}")
    if share > max_missing:
        raise InputError(f"{line}; more than {100 * max_missing:g}% of the backbone is missing (model.max_missing)")
    if log is not None:
        log(line)
    return missing, unexpected
