"""Joint image+mask transforms, run in the loader workers with an explicit random generator.

Every transform is ``(sample, rng) -> sample``; the loader seeds ``rng`` from (seed, epoch, epoch
position), so augmentations are reproducible and independent of workers and ranks. Images are
resized bilinearly (PIL), masks by nearest neighbour with the same pixel-centre geometry, so the
two stay aligned; masks keep their dtype (uint8/uint16) and are padded with the ignore id.
Mask members are the sample's ``*.png`` entries. The split's ignore id is ``index.spec.ignore_id``.

``CastMasks`` (the last step of ``seg_train``, ``mask_dtype="int64"`` by default) turns masks into
the dtype losses want: torch's ``uint16`` tensors support neither ``.max()``, ``<``,
``masked_fill`` nor ``F.cross_entropy`` (torch 2.14), so 16-bit masks must not reach a loss as is.
Keep ``mask_dtype="uint16"`` (or ``None``: the stored dtype) when memory matters more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError

Sample = dict[str, Any]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, exclusive end)


def mask_keys(sample: Sample) -> list[str]:
    return [k for k, v in sample.items() if k.endswith(".png") and isinstance(v, np.ndarray)]


def size_of(sample: Sample) -> tuple[int, int]:
    """(height, width) of the sample's image, or of its first mask."""
    if isinstance(sample.get("image"), np.ndarray):
        return sample["image"].shape[:2]
    keys = mask_keys(sample)
    if not keys:
        raise InputError(f"sample {sample.get('__key__')!r} has neither an image nor a mask to transform")
    return sample[keys[0]].shape[:2]


def resize_image(image: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR, box=box))


def resize_mask(mask: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour with the pixel-centre geometry of the image resize (PIL's NEAREST, so 8- and
    16-bit maps keep their dtype and never gain a value that was not there)."""
    h, w = size
    if mask.dtype in (np.uint8, np.uint16):
        return np.asarray(Image.fromarray(np.ascontiguousarray(mask)).resize((w, h), Image.Resampling.NEAREST, box=box))
    x0, y0, x1, y1 = box  # other integer maps: the same mapping in numpy
    ys = np.clip(np.floor(y0 + (np.arange(h) + 0.5) * ((y1 - y0) / h)).astype(np.int64), y0, y1 - 1)
    xs = np.clip(np.floor(x0 + (np.arange(w) + 0.5) * ((x1 - x0) / w)).astype(np.int64), x0, x1 - 1)
    return mask[ys[:, None], xs[None, :]]


def apply_box(sample: Sample, box: Box, size: tuple[int, int]) -> Sample:
    """Crop ``box`` from image and masks and resize it to ``size`` (height, width)."""
    out = dict(sample)
    if isinstance(out.get("image"), np.ndarray):
        out["image"] = resize_image(out["image"], box, size)
    for k in mask_keys(out):
        out[k] = resize_mask(out[k], box, size)
    return out


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(pair) < 1:
        raise InputError(f"sizes must be >= 1 pixel, not {size}")
    return pair


@dataclass(frozen=True)
class Resize:
    """To ``size`` (h, w); an int resizes the short side and keeps the aspect ratio."""

    size: int | tuple[int, int]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = size_of(sample)
        if isinstance(self.size, int):
            s = self.size / min(h, w)
            target = (max(1, round(h * s)), max(1, round(w * s)))
        else:
            target = _pair(self.size)
        return apply_box(sample, (0, 0, w, h), target)


@dataclass(frozen=True)
class RandomScale:
    """Rescale by a factor drawn uniformly from ``ratio`` (mmseg's ratio_range), aspect kept."""

    ratio: tuple[float, float] = (0.5, 2.0)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = size_of(sample)
        s = rng.uniform(*self.ratio)
        return apply_box(sample, (0, 0, w, h), (max(1, round(h * s)), max(1, round(w * s))))


@dataclass(frozen=True)
class RandomResizedCrop:
    """torchvision's RandomResizedCrop for image and masks: area ``scale``, aspect ``ratio``."""

    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def box(self, h: int, w: int, rng: np.random.Generator) -> Box:
        area = h * w
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                return x0, y0, x0 + cw, y0 + ch
        aspect = w / h  # fallback: the largest centred crop within the ratio bounds
        if aspect < self.ratio[0]:
            cw, ch = w, round(w / self.ratio[0])
        elif aspect > self.ratio[1]:
            ch, cw = h, round(h * self.ratio[1])
        else:
            cw, ch = w, h
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        return x0, y0, x0 + cw, y0 + ch

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = size_of(sample)
        return apply_box(sample, self.box(h, w, rng), _pair(self.size))


def _pad(sample: Sample, h: int, w: int, top: int, left: int, ignore: int, fill: int) -> Sample:
    out = dict(sample)
    if isinstance(out.get("image"), np.ndarray):
        img = out["image"]
        canvas = np.full((h, w, img.shape[2]), fill, dtype=img.dtype)
        canvas[top : top + img.shape[0], left : left + img.shape[1]] = img
        out["image"] = canvas
    for k in mask_keys(out):
        m = out[k]
        if ignore > np.iinfo(m.dtype).max:
            raise InputError(f"ignore id {ignore} does not fit the {m.dtype} mask {k!r}")
        canvas = np.full((h, w), ignore, dtype=m.dtype)
        canvas[top : top + m.shape[0], left : left + m.shape[1]] = m
        out[k] = canvas
    return out


@dataclass(frozen=True)
class PadTo:
    """Pad bottom/right to at least ``size``: image with ``fill``, masks with the ignore id."""

    size: int | tuple[int, int]
    ignore: int = 255
    fill: int = 0

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        th, tw = _pair(self.size)
        h, w = size_of(sample)
        if h >= th and w >= tw:
            return sample
        return _pad(sample, max(h, th), max(w, tw), 0, 0, self.ignore, self.fill)


@dataclass(frozen=True)
class RandomCrop:
    """A random ``size`` crop; smaller samples are first padded (image ``fill``, masks ``ignore``)."""

    size: int | tuple[int, int]
    ignore: int = 255
    fill: int = 0

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        th, tw = _pair(self.size)
        sample = PadTo((th, tw), self.ignore, self.fill)(sample, rng)
        h, w = size_of(sample)
        y0, x0 = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
        out = dict(sample)
        if isinstance(out.get("image"), np.ndarray):
            out["image"] = out["image"][y0 : y0 + th, x0 : x0 + tw]
        for k in mask_keys(out):
            out[k] = out[k][y0 : y0 + th, x0 : x0 + tw]
        return out


@dataclass(frozen=True)
class HFlip:
    """Mirror image and masks left-right with probability ``p``."""

    p: float = 0.5

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        out = dict(sample)
        if isinstance(out.get("image"), np.ndarray):
            out["image"] = out["image"][:, ::-1]
        for k in mask_keys(out):
            out[k] = out[k][:, ::-1]
        return out


LABEL_MODES = ("class", "ignore")


@dataclass(frozen=True)
class LabelToMask:
    """Give an image-level sample (no ``ext`` mask) a constant map: its ``cls`` (mode ``class``) or
    the ignore id (mode ``ignore``). Samples that have the mask are left alone."""

    ext: str = "seg.png"
    mode: str = "class"
    ignore: int = 255

    def __post_init__(self) -> None:
        if self.mode not in LABEL_MODES:
            raise InputError(f"LabelToMask mode must be one of {LABEL_MODES}, not {self.mode!r}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if isinstance(sample.get(self.ext), np.ndarray):
            return sample
        if self.mode == "class":
            if sample.get("cls") is None:
                raise InputError(f"sample {sample.get('__key__')!r} has no mask and no cls to fill one with")
            value = int(sample["cls"])
        else:
            value = self.ignore
        h, w = size_of(sample)
        out = dict(sample)
        out[self.ext] = np.full((h, w), value, dtype=np.uint8 if max(value, self.ignore) <= 255 else np.uint16)
        return out


MASK_DTYPES = ("int64", "int32", "uint8", "uint16")


@dataclass(frozen=True)
class CastMasks:
    """Every mask member as ``dtype`` (``int64`` for losses; ``uint8``/``uint16`` to keep them small)."""

    dtype: str = "int64"

    def __post_init__(self) -> None:
        if self.dtype not in MASK_DTYPES:
            raise InputError(f"mask_dtype must be one of {MASK_DTYPES} or None, not {self.dtype!r}")

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        out = dict(sample)
        for k in mask_keys(out):
            m = out[k]
            if m.dtype != self.dtype:
                if self.dtype in ("uint8", "uint16") and m.size and int(m.max()) > np.iinfo(self.dtype).max:
                    raise InputError(f"mask {k!r} of sample {sample.get('__key__')!r} holds ids above {self.dtype}")
                out[k] = m.astype(self.dtype)
        return out


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order with the same generator."""

    transforms: tuple[Callable[[Sample, np.random.Generator], Sample], ...]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


def seg_train(size: int | tuple[int, int], ignore: int, ratio: tuple[float, float] = (0.5, 2.0),
              base: int | None = None, image_labels: str | None = None, mask_dtype: str | None = "int64") -> Compose:
    """The usual segmentation training recipe: [label map for image-level samples] → [resize short
    side to ``base``] → random scale → random crop ``size`` (padding with ignore) → flip → masks as
    ``mask_dtype`` (``int64`` by default, what losses take; ``None`` keeps the stored uint8/uint16)."""
    steps: list[Callable[[Sample, np.random.Generator], Sample]] = []
    if image_labels is not None:
        steps.append(LabelToMask(mode=image_labels, ignore=ignore))
    if base is not None:
        steps.append(Resize(base))
    steps += [RandomScale(ratio), RandomCrop(size, ignore), HFlip()]
    if mask_dtype is not None:
        steps.append(CastMasks(mask_dtype))
    return Compose(tuple(steps))
