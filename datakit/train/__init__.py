"""The thin shared trainer: config, models (timm / open_clip backbones + heads), losses, loop."""
