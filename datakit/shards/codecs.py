"""Image and mask bytes: JPEG pass-through, conversion of everything else, mask PNGs.

A valid 8-bit, 3-component JPEG is stored as its original bytes (no decode, no re-encode), except
that an EXIF orientation tag is reset to 1: masks are in the stored-pixel frame, and a reader that
auto-rotates would otherwise misalign them (the original orientation is recorded in the json
member). Anything else (CMYK or greyscale JPEG, a PNG named ``.JPEG``, 12-bit JPEG...) is decoded
and re-encoded as an RGB JPEG, so the ``jpg`` member always holds RGB JPEG bytes. An image whose
header claims more than ``MAX_PIXELS`` is refused before anything decodes it (``image_too_large``).

Masks are PNGs in one of the encodings of ``spec.MASK_ENCODINGS``: 8-bit ids as grey PNGs, wider
ids as RGB with id = R + 256*G. ``decode_mask`` reads every encoding back to the integer ids.
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

MAX_PIXELS = 300_000_000  # large ADE20K-full / ImageNet-21K photos are legitimate; 60000x60000 headers are not
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ORIENTATION_TAG = 0x0112


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
    orientation: int = 1  # the EXIF orientation the source had (the stored bytes always say 1)


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
            check_pixels(img.width, img.height, origin)
            img.load()
    except Image.DecompressionBombError as err:
        raise SampleError("image_too_large", f"{origin}: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SampleError("unreadable_image", f"{origin}: {err}") from None
    return img


def check_pixels(width: int, height: int, origin: str) -> None:
    """Refuse a decompression bomb from its header alone (``image_too_large``)."""
    if width * height > MAX_PIXELS:
        raise SampleError("image_too_large", f"{origin}: {width}x{height} is over {MAX_PIXELS:,} pixels")


def _exif_orientation_at(data: bytes) -> tuple[int, int]:
    """(orientation, byte offset of its value) from a JPEG's EXIF APP1 segment; (1, -1) when absent."""
    pos, n = 2, len(data)
    while pos + 4 <= n and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA):
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\0\0":
            return _tiff_orientation(data, pos + 10, min(n, pos + 2 + length))
        pos += 2 + length
    return 1, -1


def _tiff_orientation(data: bytes, tiff: int, end: int) -> tuple[int, int]:
    order = {b"II": "<", b"MM": ">"}.get(data[tiff : tiff + 2])
    if order is None or tiff + 8 > end:
        return 1, -1
    (ifd,) = struct.unpack_from(order + "I", data, tiff + 4)
    at = tiff + ifd
    if at + 2 > end:
        return 1, -1
    (count,) = struct.unpack_from(order + "H", data, at)
    for i in range(count):
        entry = at + 2 + 12 * i
        if entry + 12 > end:
            break
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag == ORIENTATION_TAG and kind == 3:  # SHORT
            return struct.unpack_from(order + "H", data, entry + 8)[0], entry + 8
    return 1, -1


def clear_orientation(data: bytes) -> tuple[bytes, int]:
    """The JPEG with its EXIF orientation set to 1 (one 2-byte patch) and the orientation it had."""
    orientation, at = _exif_orientation_at(data)
    if orientation == 1 or at < 0:
        return data, 1
    patched = bytearray(data)
    patched[at : at + 2] = struct.pack(_byte_order(data, at) + "H", 1)
    return bytes(patched), orientation


def _byte_order(data: bytes, value_at: int) -> str:
    """The TIFF byte order governing the value at ``value_at`` (searched back to the Exif header)."""
    tiff = data.rfind(b"Exif\0\0", 0, value_at) + 6
    return "<" if data[tiff : tiff + 2] == b"II" else ">"


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
    if head:
        check_pixels(head.width, head.height, origin)
    if head and head.components == 3 and head.precision == 8 and head.sof in _PASS_SOF:
        stored, orientation = clear_orientation(data)
        if head.width > 0 and head.height > 0 and _has_eoi(data):
            return EncodedImage(stored, head.width, head.height, False, orientation)
        img = _decode_pil(data, origin)  # no end marker: keep it only if it decodes fully
        return EncodedImage(stored, img.width, img.height, False, orientation)
    img = _decode_pil(data, origin)
    orientation = int(img.getexif().get(ORIENTATION_TAG, 1) or 1) if hasattr(img, "getexif") else 1
    return EncodedImage(encode_jpeg(img), img.width, img.height, True, orientation)


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


def encode_mask(mask: np.ndarray, bits: int, encoding: str = "") -> bytes:
    """A mask PNG in ``encoding`` (default: ``gray8`` for 8-bit ids, ``rgb16`` for 16-bit)."""
    if mask.ndim != 2:
        raise SampleError("bad_mask", f"mask must be 2-D, got shape {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.bool_:
        raise SampleError("bad_mask", f"mask must hold integers, got {mask.dtype}")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) >= (1 << bits)):
        raise SampleError("label_out_of_range", f"values {int(mask.min())}..{int(mask.max())} do not fit {bits} bits")
    encoding = encoding or ("gray8" if bits == 8 else "rgb16")
    if encoding == "gray8":
        img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "L")
    elif encoding == "rgb16":
        ids = mask.astype(np.uint16, copy=False)
        rgb = np.zeros((*ids.shape, 3), np.uint8)
        rgb[..., 0] = ids & 0xFF
        rgb[..., 1] = ids >> 8
        img = Image.fromarray(rgb, "RGB")
    else:
        img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint16))  # gray16: mode I;16
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def png_layout(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None when the bytes are not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 26 or data[12:16] != b"IHDR":
        return None
    return data[24], data[25]


def decode_mask(data: bytes) -> np.ndarray:
    """The stored class ids exactly, whatever the encoding: grey 8-bit → uint8, grey 16-bit → uint16,
    RGB (``rgb16``) → R + 256*G as uint16. The dtype follows the PNG's IHDR, not the values."""
    layout = png_layout(data)
    with Image.open(io.BytesIO(data)) as img:
        if img.mode == "RGB":
            rgb = np.asarray(img)
            return rgb[..., 0].astype(np.uint16) | (rgb[..., 1].astype(np.uint16) << 8)
        if img.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "1"):
            raise SampleError("bad_mask", f"mask PNG has mode {img.mode}, expected grey or RGB-coded ids")
        arr = np.asarray(img)
    want = np.uint16 if layout is not None and layout[0] == 16 else np.uint8
    return arr if arr.dtype == want else arr.astype(want)
