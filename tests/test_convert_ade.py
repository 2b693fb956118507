"""ADE20K converters on the real fixtures: A150 challenge, ADE-full -> A150 / A847, converted .tif folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.errors import InputError
from datakit.shards import codecs
from datakit.shards.index import load_index
from datakit.sources import ade
from helpers_foundation import read_split

FIX = Path(__file__).parent / "fixtures"
A150 = FIX / "ade20k"
FULL = FIX / "ade20k_full"
STREET = FULL / "ADE20K_2021_17_01" / "images" / "ADE" / "training" / "urban" / "street"
NAMES = ("ADE_train_00016869", "ADE_train_00016900", "ADE_train_00016964")
OPTS = BuildOptions(workers=1, progress=False)




def ade_classes(path: Path) -> np.ndarray:
    rgb = np.array(Image.open(path)).astype(np.int64)
    return rgb[..., 0] // 10 * 256 + rgb[..., 1]


def test_a150_challenge_reduced(tmp_path: Path) -> None:
    report = build(ade.make_source({"src": str(A150), "splits": ["val"]}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 3 and not report.splits[0].failures
    got = read_split(tmp_path / "out", "val")
    for i in (1, 2, 3):
        key = f"ADE_val_0000000{i}"
        raw = np.array(Image.open(A150 / "annotations" / "validation" / f"{key}.png")).astype(np.int64)
        want = np.where(raw == 0, 255, raw - 1)
        mask = codecs.decode_mask(got[key]["seg.png"])
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, want)
        assert got[key]["jpg"] == (A150 / "images" / "validation" / f"{key}.jpg").read_bytes()
    index = load_index(tmp_path / "out" / "val")
    assert "reduce_zero_label is already applied" in index.spec.notes["labels"]
    assert index.spec.classes.ignore_index == 255 and index.spec.classes.names()[0] == "wall"
    assert index.listing["expected_samples"] == 2000 and index.listing["shortfall"] == 1997
    text = ade.report(report, {"src": str(A150)})
    assert "val: 3 samples written of 2,000 expected (SHORTFALL 1,997)" in text


def test_full_to_a150_reproduces_convert_from_ade(tmp_path: Path) -> None:
    """The shipped convertFromADE example: raw 1024x768 -> A150 683x512, exact."""
    folder = tmp_path / "ADE20K_2021_17_01" / "images" / "ADE" / "training" / "x"
    folder.mkdir(parents=True)
    shutil.copy(A150 / "convertFromADE" / "ADE_train_00000970_raw.png", folder / "ADE_train_00000970_seg.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)).save(folder / "ADE_train_00000970.jpg")
    src = ade.make_source({"src": str(tmp_path / "ADE20K_2021_17_01"), "layout": "full", "splits": "train"})
    build(src, tmp_path / "out", opts=OPTS)
    sample = read_split(tmp_path / "out", "train")["ADE_train_00000970"]
    challenge = np.array(Image.open(A150 / "convertFromADE" / "ADE_train_00000970_challenge.png")).astype(np.int64)
    mask = codecs.decode_mask(sample["seg.png"])
    np.testing.assert_array_equal(mask, np.where(challenge == 0, 255, challenge - 1))
    assert codecs.image_size(sample["jpg"]) == (683, 512)
    assert json.loads(sample["json"])["original_size"] == [1024, 768]


def test_full_to_a847_center_rule_matches_derived_tifs(tmp_path: Path) -> None:
    src = ade.make_source({"src": str(FULL), "kind": "a847", "splits": "train", "label_resize": "center"})
    report = build(src, tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 3
    got = read_split(tmp_path / "out", "train")
    for name in NAMES:
        tif = np.array(Image.open(FULL / "A847" / "annotations" / "training" / f"{name}.tif"))
        mask = codecs.decode_mask(got[name]["seg.png"])
        assert mask.dtype == np.uint16
        np.testing.assert_array_equal(mask, tif)
        # the derived JPEGs were made with Pillow bilinear + quality 95, as the converter does (byte-equal
        # with this Pillow; compared decoded so a JPEG encoder update does not break the test)
        ref = codecs.decode_rgb((FULL / "A847" / "images" / "training" / f"{name}.jpg").read_bytes()).astype(int)
        mine = codecs.decode_rgb(got[name]["jpg"]).astype(int)
        assert mine.shape == ref.shape and np.abs(mine - ref).mean() < 1.0
    spec = load_index(tmp_path / "out" / "train").spec
    assert spec.masks[0].bits == 16 and spec.classes.ignore_index == 65535 and len(spec.classes.entries) == 847


def test_full_to_a847_default_matches_maskformer_cv2(tmp_path: Path) -> None:
    """Default rule = cv2 INTER_NEAREST: equal to maps made by MaskFormer's own steps run with OpenCV."""
    build(ade.make_source({"src": str(FULL), "kind": "a847", "splits": "train"}), tmp_path / "out", opts=OPTS)
    got = read_split(tmp_path / "out", "train")
    differs = 0
    for name in NAMES:
        want = np.array(Image.open(FULL / "A847_cv2" / f"{name}.png"))
        mask = codecs.decode_mask(got[name]["seg.png"])
        np.testing.assert_array_equal(mask, want)
        centre = np.array(Image.open(FULL / "A847" / "annotations" / "training" / f"{name}.tif"))
        differs += int((centre != want).sum())
    assert differs > 0  # the two nearest rules really differ on these images


def test_a847_tif_folders(tmp_path: Path) -> None:
    src = ade.make_source({"src": str(FULL / "A847"), "kind": "a847", "layout": "tif", "splits": ["train"]})
    build(src, tmp_path / "out", opts=OPTS)
    got = read_split(tmp_path / "out", "train")
    assert sorted(got) == list(NAMES)
    for name in NAMES:
        tif = np.array(Image.open(FULL / "A847" / "annotations" / "training" / f"{name}.tif"))
        np.testing.assert_array_equal(codecs.decode_mask(got[name]["seg.png"]), tif)
        assert 65535 in tif


def test_bad_inputs_are_counted(tmp_path: Path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    shutil.copytree(A150, root, ignore=shutil.ignore_patterns("convertFromADE"))
    ann = root / "annotations" / "validation"
    img = root / "images" / "validation"
    raw = np.array(Image.open(ann / "ADE_val_00000001.png"))
    raw[0, 0] = 151  # no such A150 class
    Image.fromarray(raw).save(ann / "ADE_val_00000001.png")
    Image.open(ann / "ADE_val_00000002.png").resize((10, 10)).save(ann / "ADE_val_00000002.png")
    (ann / "ADE_val_00000003.png").write_bytes(b"\x89PNG broken")
    shutil.copy(img / "ADE_val_00000003.jpg", img / "ADE_val_00000004.jpg")  # image without annotation
    shutil.copy(ann / "ADE_val_00000001.png", ann / "ADE_val_00000005.png")  # annotation without image
    report = build(ade.make_source({"src": str(root), "splits": "val"}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 0
    assert report.splits[0].failures == {"mask_size_mismatch": 1, "missing_image": 1, "missing_mask": 1,
                                         "unknown_label": 1, "unreadable_mask": 1}
    assert load_index(tmp_path / "out" / "val").listing["found_samples"] == 3


def test_params_are_validated() -> None:
    with pytest.raises(InputError, match="unknown parameter"):
        ade.make_source({"src": str(A150), "reduce": True})
    with pytest.raises(InputError, match="only A150"):
        ade.make_source({"src": str(A150), "kind": "a847", "layout": "challenge"})
    with pytest.raises(InputError, match="expected an integer"):
        ade.make_source({"src": str(A150), "short_side": "big"})
    with pytest.raises(InputError, match="not found"):
        ade.make_source({"src": str(FIX / "voc"), "splits": "val"}).records("val")


def test_short_side_rules() -> None:
    # convertFromADE.m leaves squares alone; MaskFormer resizes them.
    assert ade.target_size(1024, 1024, 512, "a150") == (1024, 1024)
    assert ade.target_size(1024, 1024, 512, "a847") == (512, 512)
    assert ade.target_size(2200, 1467, 512, "a847") == (768, 512)
    assert ade.target_size(400, 300, 512, "a847") == (400, 300)
    assert ade.target_size(768, 1024, 512, "a150") == (512, 683)
