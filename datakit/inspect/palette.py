"""A stable colour for every class id: the PASCAL VOC bit-interleaved palette, extended to 16 bits."""

from __future__ import annotations

import numpy as np

IGNORE_COLOR = (128, 128, 128)


def color_of(class_id: int) -> tuple[int, int, int]:
    """VOC's colormap for ids < 256 (so VOC masks look as usual); the same rule continues above."""
    r = g = b = 0
    cid = int(class_id)
    for shift in range(8):
        r |= ((cid >> 0) & 1) << (7 - shift)
        g |= ((cid >> 1) & 1) << (7 - shift)
        b |= ((cid >> 2) & 1) << (7 - shift)
        cid >>= 3
        if cid == 0:
            break
    if class_id >= 256:  # spread large ids so neighbours differ visibly
        mix = (class_id * 2654435761) & 0xFFFFFF
        r, g, b = r ^ (mix & 0xFF), g ^ ((mix >> 8) & 0xFF), b ^ ((mix >> 16) & 0xFF)
    return r, g, b


def colorize(mask: np.ndarray, ignore: int | None = None) -> np.ndarray:
    """HxWx3 uint8 colour image of a label map."""
    ids, inverse = np.unique(mask, return_inverse=True)
    lut = np.array([IGNORE_COLOR if (ignore is not None and i == ignore) else color_of(int(i)) for i in ids], dtype=np.uint8)
    return lut[inverse.reshape(mask.shape)]
