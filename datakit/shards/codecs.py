"""Image and mask bytes: JPEG pass-through, conversion of everything else, 8/16-bit mask PNGs.

A valid 8-bit, 3-component JPEG is stored as its original bytes (no decode, no re-encode).
Anything else (CMYK or greyscale JPEG, a PNG named ``.JPEG``, 12-bit JPEG...) is decoded and
re-encoded as an RGB JPEG, so the ``jpg`` member always holds RGB JPEG bytes.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import SampleError

JPEG_QUALITY = 95
_PASS_SOF = {0xC0, 0xC1, 0xC2}  # baseline, extended sequential, progressive (Huffman)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

Image.MAX_IMAGE_PIXELS = 300_000_000  # large ADE20K-full / ImageNet-21K photos are legitimate


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    components: int
    precision: int
    sof: int


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    width: int
    height: int
    converted: bool


def jpeg_header(data: bytes) -> JpegHeader | None:
    """Parse the frame header of a JPEG without decoding; None if the bytes are not a JPEG."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF:
            if pos + 10 > n:
                return None
            precision, height, width, comps = struct.unpack_from(">BHHB", data, pos + 4)
            return JpegHeader(width, height, comps, precision, marker)
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _has_eoi(data: bytes) -> bool:
    return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"


def _decode_pil(data: bytes, origin: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("unreadable_image", f"{origin}: {err}") from None
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of any PIL image; transparency is composited on black, 16-bit grey is scaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * 255.0 / top, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, rgba)
    return img.convert("RGB")


def encode_jpeg(img: Image.Image | np.ndarray) -> bytes:
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise SampleError("bad_image_array", f"expected HxWx3 uint8, got {img.shape} {img.dtype}")
        img = Image.fromarray(img, "RGB")
    buf = io.BytesIO()
    to_rgb(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def prepare_image(data: bytes | np.ndarray, origin: str = "") -> EncodedImage:
    """RGB JPEG bytes for the ``jpg`` member: original bytes when possible, converted otherwise."""
    if isinstance(data, np.ndarray):
        out = encode_jpeg(data)
        return EncodedImage(out, data.shape[1], data.shape[0], True)
    head = jpeg_header(data)
    if head and head.components == 3 and head.precision == 8 and head.sof in _PASS_SOF:
        if head.width > 0 and head.height > 0 and _has_eoi(data):
            return EncodedImage(data, head.width, head.height, False)
        img = _decode_pil(data, origin)  # no end marker: keep it only if it decodes fully
        return EncodedImage(data, img.width, img.height, False)
    img = _decode_pil(data, origin)
    return EncodedImage(encode_jpeg(img), img.width, img.height, True)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG header, falling back to PIL for other formats."""
    head = jpeg_header(data)
    if head:
        return head.width, head.height
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def decode_rgb(data: bytes) -> np.ndarray:
    """HxWx3 uint8 RGB at full resolution (datakit stores RGB JPEGs; anything else is converted)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img if img.mode == "RGB" else to_rgb(img))


def encode_mask(mask: np.ndarray, bits: int) -> bytes:
    """Single-channel PNG: mode L for 8-bit, 16-bit greyscale for 16-bit. Never palette or RGB."""
    if mask.ndim != 2:
        raise SampleError("bad_mask", f"mask must be 2-D, got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.bool_:
        raise SampleError("bad_mask", f"mask must hold integers, got {mask.dtype}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) >= (1 << bits)):
        raise SampleError("label_out_of_range", f"values {int(mask.min())}..{int(mask.max())} do not fit {bits} bits")
    if bits == 8:
        img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "L")
    else:
        img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint16))  # mode I;16
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """The stored label map exactly: uint8 for 8-bit PNGs, uint16 for 16-bit, no mode conversion.
    The dtype follows the PNG's declared bit depth (IHDR), not the values or Pillow's mode name."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "1"):
            raise SampleError("bad_mask", f"mask PNG has mode {img.mode}, expected single-channel")
        arr = np.asarray(img)
    sixteen = data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] == 16
    want = np.uint16 if sixteen else np.uint8
    return arr if arr.dtype == want else arr.astype(want)
