"""Image pass-through and conversion, mask PNG round trips, JPEG header parsing."""

import io

import numpy as np
import pytest
from PIL import Image

from datakit.errors import SampleError
from datakit.shards import codecs
from helpers_foundation import encode, photo

FIX = "tests/fixtures"


def test_rgb_jpeg_passes_through_byte_for_byte():
    data = encode(photo(1))
    out = codecs.prepare_image(data, "x")
    assert out.data == data and not out.converted
    assert (out.width, out.height) == (64, 48)


def test_real_jpeg_passes_through():
    data = open(f"{FIX}/voc/JPEGImages/2007_000032.jpg", "rb").read()
    out = codecs.prepare_image(data)
    assert out.data == data and (out.width, out.height) == (500, 281)


@pytest.mark.parametrize("fmt,mode", [("JPEG", "CMYK"), ("JPEG", "L"), ("PNG", None), ("PNG", "RGBA"), ("PNG", "P")])
def test_other_inputs_become_rgb_jpeg(fmt, mode):
    arr = photo(2)
    data = encode(arr, fmt, mode)
    out = codecs.prepare_image(data, "odd.JPEG")
    assert out.converted
    assert out.data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(out.data)) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 48)
    if mode is None:  # a PNG named .JPEG keeps its pixels (up to JPEG loss)
        back = codecs.decode_rgb(out.data).astype(int)
        assert np.abs(back - arr.astype(int)).mean() < 10  # unrelated pixels would differ by ~85


def test_truncated_jpeg_is_a_sample_error():
    data = encode(photo(3))
    with pytest.raises(SampleError) as err:
        codecs.prepare_image(data[: len(data) // 2], "cut.jpg")
    assert err.value.reason == "unreadable_image"


def test_garbage_is_a_sample_error():
    with pytest.raises(SampleError):
        codecs.prepare_image(b"not an image at all", "x")


def test_jpeg_header_reads_size_and_components():
    head = codecs.jpeg_header(encode(photo(4, 33, 21)))
    assert (head.width, head.height, head.components, head.precision) == (33, 21, 3, 8)
    assert codecs.jpeg_header(encode(photo(4), "JPEG", "CMYK")).components == 4
    assert codecs.jpeg_header(encode(photo(4), "PNG")) is None


def test_mask_round_trip_8_bit():
    mask = np.random.default_rng(0).integers(0, 256, (37, 53)).astype(np.uint8)
    data = codecs.encode_mask(mask, 8)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "L"
    back = codecs.decode_mask(data)
    assert back.dtype == np.uint8 and np.array_equal(back, mask)


def test_mask_round_trip_16_bit_keeps_large_ids():
    mask = np.random.default_rng(1).integers(0, 1001, (40, 30)).astype(np.uint16)
    mask[0, 0] = 1000
    mask[0, 1] = 65535
    back = codecs.decode_mask(codecs.encode_mask(mask, 16))
    assert back.dtype == np.uint16 and np.array_equal(back, mask)


def test_mask_values_that_do_not_fit_are_rejected():
    with pytest.raises(SampleError) as err:
        codecs.encode_mask(np.full((4, 4), 300, np.int32), 8)
    assert err.value.reason == "label_out_of_range"
    with pytest.raises(SampleError):
        codecs.encode_mask(np.zeros((4, 4, 3), np.uint8), 8)


def test_palette_mask_is_rejected_on_decode():
    data = open(f"{FIX}/voc/SegmentationClass/2007_000032.png", "rb").read()
    with pytest.raises(SampleError):
        codecs.decode_mask(data)  # a palette PNG is not a datakit mask
