"""Segmentation models: a timm or open_clip backbone giving a feature grid, plus a linear or FCN head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import ModelConfig


class TimmBackbone(nn.Module):
    """Any timm model as a (B, C, h, w) feature map: ViT tokens reshaped to their grid, CNNs' last stage."""

    def __init__(self, name: str, pretrained: bool, options: dict[str, Any]) -> None:
        super().__init__()
        import timm

        try:
            probe = timm.create_model(name, pretrained=False, num_classes=0, **options)
        except RuntimeError as err:
            raise InputError(f"unknown timm backbone {name!r}: {err}") from None
        self.is_vit = hasattr(probe, "patch_embed") and hasattr(probe, "num_prefix_tokens")
        if self.is_vit:
            extra = {"dynamic_img_size": True} if "dynamic_img_size" not in options else {}
            self.net = timm.create_model(name, pretrained=pretrained, num_classes=0, **extra, **options)
            self.channels = self.net.embed_dim
            self.patch = self.net.patch_embed.patch_size[0]
        else:
            self.net = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(-1,), **options)
            self.channels = self.net.feature_info.channels()[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_vit:
            return self.net(x)[-1]
        tokens = self.net.forward_features(x)[:, self.net.num_prefix_tokens :]
        h, w = x.shape[2] // self.patch, x.shape[3] // self.patch
        return tokens.transpose(1, 2).reshape(x.shape[0], self.channels, h, w)


class OpenClipBackbone(nn.Module):
    """An open_clip vision tower's patch tokens as a feature grid (input must match its image size)."""

    def __init__(self, name: str, pretrained: str) -> None:
        super().__init__()
        import open_clip

        model = open_clip.create_model(name, pretrained=pretrained or None)
        self.net = model.visual
        self.net.output_tokens = True
        self.channels = self.net.transformer.width
        self.grid = self.net.grid_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, tokens = self.net(x)
        return tokens.transpose(1, 2).reshape(x.shape[0], self.channels, *self.grid)


def make_head(kind: str, channels: int, num_classes: int, hidden: int) -> nn.Module:
    """linear: a 1x1 conv on BN'd features; fcn: two 3x3 conv-BN-ReLU blocks then a 1x1 conv (mmseg FCNHead)."""
    if kind == "linear":
        return nn.Sequential(nn.BatchNorm2d(channels), nn.Conv2d(channels, num_classes, 1))
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
        nn.Dropout2d(0.1), nn.Conv2d(hidden, num_classes, 1),
    )


class SegModel(nn.Module):
    """backbone → head → logits upsampled (bilinear) to the input size."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images``: uint8 or float (B, 3, H, W) in 0..255; returns (B, classes, H, W) logits."""
        x = (images.float() - self.mean) / self.std
        logits = self.head(self.backbone(x))
        return F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)


def build_model(cfg: ModelConfig, num_classes: int) -> SegModel:
    if cfg.backbone.startswith("open_clip:"):
        backbone: nn.Module = OpenClipBackbone(cfg.backbone.split(":", 1)[1], cfg.pretrained)
    else:
        from_file = bool(cfg.pretrained) and cfg.pretrained != "timm"
        backbone = TimmBackbone(cfg.backbone, cfg.pretrained == "timm", dict(cfg.options))
        if from_file:
            path = Path(cfg.pretrained)
            if not path.exists():
                raise InputError(f"pretrained backbone file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            missing, unexpected = backbone.net.load_state_dict(state.get("state_dict", state), strict=False)
            if len(missing) == len(list(backbone.net.state_dict())):
                raise InputError(f"{path}: no weight matches backbone {cfg.backbone}")
    return SegModel(backbone, make_head(cfg.head, backbone.channels, num_classes, cfg.head_channels))
