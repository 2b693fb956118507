"""The training transform of a config: [short side to ``aug.scale``] → random rescale (``aug.ratio``) →
random crop (masks padded with the ignore id) → flip (``aug.hflip``) → [photometric distortion].

Built from ``datakit.stream.transforms``; the photometric step follows mmseg's PhotoMetricDistortion
(brightness ±32, contrast and saturation ×0.5..1.5, hue ±18 of 180, each with probability 0.5,
contrast before or after the colour steps). Every draw comes from the loader's seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..stream.transforms import Compose, HFlip, RandomCrop, RandomScale, Resize
from .config import Config

Sample = dict[str, Any]


@dataclass(frozen=True)
class PhotoMetric:
    """mmseg PhotoMetricDistortion on the ``image`` member (uint8 RGB)."""

    brightness: float = 32.0
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: float = 18.0  # of OpenCV's 180 hue steps

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        img = sample.get("image")
        if not isinstance(img, np.ndarray):
            return sample
        x = img.astype(np.float32)
        if rng.random() < 0.5:
            x = x + rng.uniform(-self.brightness, self.brightness)
        contrast_first = rng.random() < 0.5
        alpha = rng.uniform(*self.contrast) if rng.random() < 0.5 else None
        if contrast_first and alpha is not None:
            x = x * alpha
        x = self._colour(np.clip(x, 0, 255).astype(np.uint8), rng).astype(np.float32)
        if not contrast_first and alpha is not None:
            x = x * alpha
        out = dict(sample)
        out["image"] = np.clip(x, 0, 255).astype(np.uint8)
        return out

    def _colour(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Saturation scale and hue shift in HSV (PIL's 0..255 hue)."""
        sat = rng.uniform(*self.saturation) if rng.random() < 0.5 else None
        hue = rng.uniform(-self.hue, self.hue) if rng.random() < 0.5 else None
        if sat is None and hue is None:
            return img
        hsv = np.asarray(Image.fromarray(np.ascontiguousarray(img)).convert("HSV")).astype(np.float32)
        if sat is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
        if hue is not None:
            hsv[..., 0] = (hsv[..., 0] + hue * 256.0 / 180.0) % 256
        return np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"))


def train_transform(cfg: Config, ignore: int) -> Callable[[Sample, np.random.Generator], Sample]:
    """The joint image+mask training transform of ``cfg`` for a split whose ignore id is ``ignore``."""
    a = cfg.aug
    steps: list[Callable[[Sample, np.random.Generator], Sample]] = []
    if a.scale:
        steps.append(Resize(a.scale))
    steps += [RandomScale((float(a.ratio[0]), float(a.ratio[1]))), RandomCrop(cfg.train.crop, ignore)]
    if a.hflip > 0:
        steps.append(HFlip(a.hflip))
    if a.photometric:
        steps.append(PhotoMetric())
    return Compose(tuple(steps))
