"""Segmentation models: a timm or open_clip backbone giving a feature grid, plus a linear or FCN head.

Only the chosen backbone's library is imported (``import timm`` alone costs seconds). ViT
backbones accept any input size: timm through ``dynamic_img_size``, open_clip by resampling its
positional embedding to the input's grid (bicubic, as mmseg and timm do).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import ModelConfig
from .posembed import resample_pos_embed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TimmBackbone(nn.Module):
    net: Any  # a timm model: its attributes are looked up by name (patch_embed, blocks, feature_info)
    """Any timm model as a (B, C, h, w) feature map: ViT tokens reshaped to their grid, CNNs' last stage."""

    NO_DECAY = ("pos_embed", "cls_token", "reg_token", "dist_token")

    def __init__(self, name: str, pretrained: bool, options: dict[str, Any], drop_path: float = 0.0) -> None:
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise InputError(f"unknown timm backbone {name!r} (see timm.list_models())")
        opts = dict(options)
        if drop_path:
            opts.setdefault("drop_path_rate", drop_path)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.num_layers = 0
        try:
            try:  # ViTs: any input size; CNNs do not know the keyword and are made as feature extractors
                self.net = timm.create_model(name, pretrained=pretrained, num_classes=0,
                                             **{"dynamic_img_size": True, **opts})
            except TypeError:
                self.net = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(-1,), **opts)
        except (RuntimeError, TypeError, ValueError, AssertionError) as err:
            raise InputError(f"backbone {name!r} rejects its options {sorted(opts)}: {' '.join(str(err).split())}") from None
        self.is_vit = hasattr(self.net, "patch_embed") and hasattr(self.net, "num_prefix_tokens") and hasattr(self.net, "blocks")
        if self.is_vit:
            self.channels = self.net.embed_dim
            self.patch = self.net.patch_embed.patch_size[0]
            self.num_layers = len(self.net.blocks)
        elif hasattr(self.net, "feature_info"):
            self.channels = self.net.feature_info.channels()[-1]
        else:
            raise InputError(f"backbone {name!r} is neither a ViT nor a CNN with feature stages")

    def layer_id(self, name: str) -> int:
        """0 for embeddings, i + 1 for block i, num_layers + 1 for the rest (BEiT/MAE layer decay)."""
        if not self.is_vit:
            return 0
        if name.startswith(("net.cls_token", "net.pos_embed", "net.patch_embed", "net.reg_token")):
            return 0
        found = re.match(r"net\.blocks\.(\d+)\.", name)
        return int(found.group(1)) + 1 if found else self.num_layers + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_vit:
            return self.net(x)[-1]
        tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens :]
        h, w = x.shape[2] // self.patch, x.shape[3] // self.patch
        return tokens.transpose(1, 2).reshape(x.shape[0], self.channels, h, w)


class OpenClipBackbone(nn.Module):
    net: Any  # open_clip's visual tower
    """An open_clip vision tower's patch tokens as a feature grid, at any input size."""

    NO_DECAY = ("positional_embedding", "class_embedding")

    def __init__(self, name: str, pretrained: str, options: dict[str, Any]) -> None:
        super().__init__()
        import open_clip

        try:
            model = open_clip.create_model(name, pretrained=pretrained or None, **options)
        except (RuntimeError, TypeError, ValueError) as err:
            raise InputError(f"open_clip backbone {name!r}: {' '.join(str(err).split())}") from None
        self.net = model.visual
        if not hasattr(self.net, "conv1") or not hasattr(self.net, "positional_embedding"):
            raise InputError(f"open_clip backbone {name!r} is not a ViT; only ViT towers give a feature grid")
        self.net.output_tokens = True
        self.channels = self.net.transformer.width
        self.grid = tuple(self.net.grid_size)
        self.patch = self.net.conv1.kernel_size[0]
        self.num_layers = len(self.net.transformer.resblocks)
        self.mean = tuple(getattr(self.net, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
        self.std = tuple(getattr(self.net, "image_std", None) or open_clip.OPENAI_DATASET_STD)

    def layer_id(self, name: str) -> int:
        if name.startswith(("net.class_embedding", "net.positional_embedding", "net.conv1", "net.ln_pre")):
            return 0
        found = re.match(r"net\.transformer\.resblocks\.(\d+)\.", name)
        return int(found.group(1)) + 1 if found else self.num_layers + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.net
        feats = v.conv1(x)
        b, c, h, w = feats.shape
        tokens = feats.reshape(b, c, h * w).permute(0, 2, 1)
        cls = v.class_embedding.to(tokens.dtype).expand(b, 1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        pos = resample_pos_embed(v.positional_embedding, (h, w), 1, self.grid)
        tokens = v.ln_pre(v.patch_dropout(tokens + pos.to(tokens.dtype)))
        _, out = v._pool(v.transformer(tokens))
        return out.transpose(1, 2).reshape(b, self.channels, h, w)


class FCNHead(nn.Module):
    """mmseg FCNHead: ``num_convs`` 3x3 conv-BN-ReLU blocks, dropout, then a 1x1 classifier (``conv_seg``)."""

    def __init__(self, channels: int, num_classes: int, hidden: int, num_convs: int, dropout: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = channels
        for _ in range(num_convs):
            blocks += [nn.Conv2d(width, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.convs = nn.Sequential(*blocks)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))


def make_head(cfg: ModelConfig, channels: int, num_classes: int) -> nn.Module:
    """linear: a 1x1 conv on BN'd features; probe: a bare 1x1 conv, N(0, 0.01) weights and zero bias
    (MaskContrast's linear probe); fcn: mmseg's FCNHead."""
    if cfg.head == "probe":
        conv = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(conv.weight, 0.0, 0.01)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        return conv
    if cfg.head == "linear":
        return nn.Sequential(nn.BatchNorm2d(channels), nn.Conv2d(channels, num_classes, 1))
    return FCNHead(channels, num_classes, cfg.head_channels, cfg.num_convs, cfg.dropout)


class SegModel(nn.Module):
    """backbone → head → logits, upsampled (bilinear) to the input size or to ``size``."""

    def __init__(self, backbone: nn.Module, head: nn.Module, frozen: bool = False) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.frozen = frozen
        if frozen:
            for p in backbone.parameters():
                p.requires_grad_(False)
        mean = getattr(backbone, "mean", IMAGENET_MEAN)
        std = getattr(backbone, "std", IMAGENET_STD)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

    def train(self, mode: bool = True) -> "SegModel":
        """A frozen backbone stays in eval mode (its BatchNorm statistics are not updated)."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``images``: uint8 or float (B, 3, H, W) in 0..255; returns (B, classes, *size) logits (default H, W).

        Inputs that are not a multiple of the ViT patch are padded (with the mean colour) and the
        logits of the padding are cropped away, so every size works."""
        x = (images.float() - self.mean) / self.std
        h, w = x.shape[2:]
        patch = getattr(self.backbone, "patch", 1)
        ph, pw = -h % patch, -w % patch
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        logits = self.head(self.backbone(x))
        if ph or pw:
            logits = F.interpolate(logits, size=(h + ph, w + pw), mode="bilinear", align_corners=False)[:, :, :h, :w]
        target = tuple(size) if size is not None else (h, w)
        if tuple(logits.shape[2:]) == target:
            return logits
        return F.interpolate(logits, size=target, mode="bilinear", align_corners=False)


def build_model(cfg: ModelConfig, num_classes: int, load_pretrained: bool = True, log: Any = None) -> SegModel:
    """The model of a config; ``load_pretrained=False`` skips the pretrained file (a checkpoint follows)."""
    options = dict(cfg.options)
    if cfg.backbone.startswith("open_clip:"):
        tag = cfg.pretrained if load_pretrained and cfg.pretrained and cfg.pretrained != "timm" else ""
        backbone: nn.Module = OpenClipBackbone(cfg.backbone.split(":", 1)[1], tag, options)
    else:
        backbone = TimmBackbone(cfg.backbone, load_pretrained and cfg.pretrained == "timm", options, cfg.drop_path)
        if load_pretrained and cfg.pretrained and cfg.pretrained != "timm":
            from .weights import load_backbone_weights

            load_backbone_weights(backbone.net, cfg.pretrained, cfg.max_missing, log)
    return SegModel(backbone, make_head(cfg, backbone.channels, num_classes), cfg.freeze_backbone)
