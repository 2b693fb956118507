"""PASCAL VOC converter on the real VOC samples, with generated SBD-style and saliency masks."""

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
from datakit.sources import voc
from helpers_foundation import read_split

FIX = Path(__file__).parent / "fixtures" / "voc"
IDS = ("2007_000032", "2007_000033")
OPTS = BuildOptions(workers=1, progress=False)




def palette_png(values: np.ndarray, path: Path) -> None:
    img = Image.fromarray(values.astype(np.uint8), "P")
    img.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    img.save(path)


@pytest.fixture()
def vocroot(tmp_path: Path) -> Path:
    """VOCdevkit/VOC2012 with the two real samples, id lists and generated SegmentationClassAug maps."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    shutil.copytree(FIX, root)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text(f"{IDS[0]}\n")
    (sets / "val.txt").write_text(f"{IDS[1]}\n")
    (sets / "trainaug.txt").write_text("\n".join(IDS) + "\n")
    (root / "SegmentationClassAug").mkdir()
    for sid in IDS:
        raw = np.array(Image.open(FIX / "SegmentationClass" / f"{sid}.png"))
        palette_png(np.where(raw == 255, 0, raw), root / "SegmentationClassAug" / f"{sid}.png")  # SBD: no void band
    return root


def test_splits_and_palette_indices(vocroot: Path, tmp_path: Path) -> None:
    src = voc.make_source({"src": str(tmp_path / "VOCdevkit")})
    assert src.splits() == ["train", "val", "trainaug"]
    report = build(src, tmp_path / "out", opts=OPTS)
    assert [r.samples for r in report.splits] == [1, 1, 2]
    for split, sid in (("train", IDS[0]), ("val", IDS[1])):
        got = read_split(tmp_path / "out", split)[sid]
        raw = np.array(Image.open(FIX / "SegmentationClass" / f"{sid}.png"))
        assert Image.open(FIX / "SegmentationClass" / f"{sid}.png").mode == "P"
        np.testing.assert_array_equal(codecs.decode_mask(got["seg.png"]), raw)
        assert 255 in raw and got["jpg"] == (FIX / "JPEGImages" / f"{sid}.jpg").read_bytes()
    aug = read_split(tmp_path / "out", "trainaug")
    for sid in IDS:
        want = np.array(Image.open(vocroot / "SegmentationClassAug" / f"{sid}.png"))
        np.testing.assert_array_equal(codecs.decode_mask(aug[sid]["seg.png"]), want)
    index = load_index(tmp_path / "out" / "trainaug")
    assert index.spec.notes["masks_from"] == "SegmentationClassAug" and index.listing["expected_samples"] == 10582
    assert index.spec.classes.names()[15] == "person" and index.spec.classes.ignore_index == 255
    text = voc.report(report, {"src": "x"})
    assert "trainaug: 2 samples written of 10,582 expected (SHORTFALL 10,580)" in text


def test_saliency_member(vocroot: Path, tmp_path: Path) -> None:
    sal_dir = vocroot / "saliency_supervised_model"
    sal_dir.mkdir()
    raw = np.array(Image.open(FIX / "SegmentationClass" / f"{IDS[0]}.png"))
    sal = np.where((raw > 0) & (raw < 255), 255, 0).astype(np.uint8)
    Image.fromarray(sal, "L").save(sal_dir / f"{IDS[0]}.png")  # IDS[1] has none, as after MaskContrast's filter
    params = {"src": str(vocroot), "splits": "trainaug", "saliency": "saliency_supervised_model"}
    report = build(voc.make_source(params), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 1 and not report.splits[0].failures
    got = read_split(tmp_path / "out", "trainaug")
    assert list(got) == [IDS[0]]
    np.testing.assert_array_equal(codecs.decode_mask(got[IDS[0]]["sal.png"]), sal)
    notes = load_index(tmp_path / "out" / "trainaug").listing
    assert notes["saliency_missing"]["count"] == 1 and notes["saliency_missing"]["ids"] == [IDS[1]]
    assert load_index(tmp_path / "out" / "trainaug").spec.members() == ["jpg", "json", "sal.png", "seg.png"]
    failing = build(voc.make_source({**params, "missing_saliency": "fail"}), tmp_path / "out2", opts=OPTS)
    assert failing.splits[0].failures == {"missing_saliency": 1}
    Image.fromarray((sal > 0).astype(np.uint8), "L").save(sal_dir / f"{IDS[0]}.png")  # a 0/1 map: rejected
    bad = build(voc.make_source(params), tmp_path / "out3", opts=OPTS)
    assert bad.splits[0].failures == {"bad_saliency": 1}


def test_bad_inputs_are_counted(vocroot: Path, tmp_path: Path) -> None:
    (vocroot / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join([*IDS, "2099_000001", "2099_000002"]))
    raw = np.array(Image.open(FIX / "SegmentationClass" / f"{IDS[0]}.png"))
    raw[0, 0] = 21  # VOC has classes 0..20 only
    palette_png(raw, vocroot / "SegmentationClass" / f"{IDS[0]}.png")
    Image.open(FIX / "SegmentationClass" / f"{IDS[1]}.png").convert("RGB").save(vocroot / "SegmentationClass" / f"{IDS[1]}.png")
    shutil.copy(FIX / "JPEGImages" / f"{IDS[0]}.jpg", vocroot / "JPEGImages" / "2099_000001.jpg")  # no mask
    palette_png(raw[:10, :10] * 0, vocroot / "SegmentationClass" / "2099_000002.png")  # no image
    report = build(voc.make_source({"src": str(vocroot), "splits": "train"}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 0
    assert report.splits[0].failures == {"bad_mask": 1, "missing_image": 1, "missing_mask": 1, "unknown_label": 1}
    failed = load_index(tmp_path / "out" / "train").extra["failed_samples"]
    assert {f["key"] for f in failed} == {*IDS, "2099_000001", "2099_000002"}


def test_maskcontrast_layout_and_params(tmp_path: Path) -> None:
    root = tmp_path / "VOCSegmentation"
    (root / "sets").mkdir(parents=True)
    shutil.copytree(FIX / "JPEGImages", root / "images")
    shutil.copytree(FIX / "SegmentationClass", root / "SegmentationClass")
    (root / "sets" / "val.txt").write_text("\n".join(IDS))
    src = voc.make_source({"src": str(root)})
    assert src.splits() == ["val"]
    build(src, tmp_path / "out", opts=OPTS)
    assert sorted(read_split(tmp_path / "out", "val")) == list(IDS)
    assert json.loads(read_split(tmp_path / "out", "val")[IDS[0]]["json"]) == {"id": IDS[0]}
    with pytest.raises(InputError, match="no id list"):
        voc.make_source({"src": str(root), "splits": "trainaug"})
    with pytest.raises(InputError, match="saliency folder"):
        voc.make_source({"src": str(root), "saliency": "nope"})
    with pytest.raises(InputError, match="unknown parameter"):
        voc.make_source({"src": str(root), "year": 2012})
