"""Class folders (ImageNet-1k/21K, LarvSeg I22K) and plain folders (PASS) into shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.errors import InputError
from datakit.pipeline.recipes import load_recipe, make_source as recipe_source
from datakit.shards.index import load_index
from datakit.sources import imagefolder
from helpers_foundation import read_split

OPTS = BuildOptions(workers=1, progress=False)
WNIDS = ("n01440764", "n01443537", "n99999999")




def make_tree(root: Path) -> dict[str, bytes]:
    """Two images per wnid folder (one PNG among them); returns the bytes of the JPEGs."""
    files = {}
    for i, wnid in enumerate(WNIDS):
        (root / wnid).mkdir(parents=True)
        for n in range(2):
            arr = np.full((12, 16, 3), 40 * i + n, np.uint8)
            ext = "png" if (i, n) == (1, 1) else "JPEG"
            path = root / wnid / f"{wnid}_{n}.{ext}"
            Image.fromarray(arr).save(path, format="PNG" if ext == "png" else "JPEG")
            files[f"{wnid}/{wnid}_{n}"] = path.read_bytes()
    return files


def test_class_folders_from_folder_names(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "in")
    report = build(imagefolder.make_source({"src": str(tmp_path / "in")}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 6
    got = read_split(tmp_path / "out", "train")
    for rel, data in files.items():
        wnid = rel.split("/")[0]
        s = got[rel.replace("/", "_")]
        assert int(s["cls"]) == WNIDS.index(wnid) and json.loads(s["json"])["wnid"] == wnid
        if not rel.endswith("_1") or wnid != WNIDS[1]:
            assert s["jpg"] == data  # JPEGs pass through; the PNG is converted
    spec = load_index(tmp_path / "out" / "train").spec
    assert [e.extra["wnid"] for e in spec.classes.entries] == list(WNIDS) and spec.masks == ()
    assert spec.notes["class_list"] == "sorted folder names"


def test_class_list_manifest_and_ids(tmp_path: Path) -> None:
    make_tree(tmp_path / "in")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({WNIDS[1]: "goldfish-ish", WNIDS[0]: "tench-ish"}))  # order = class index
    params = {"src": str(tmp_path / "in"), "class_list": str(classes), "dataset": "in2"}
    build(imagefolder.make_source(params), tmp_path / "out", opts=OPTS)
    got = read_split(tmp_path / "out", "train")
    assert sorted(got) == sorted(f"{w}_{w}_{n}" for w in WNIDS[:2] for n in range(2))
    assert int(got[f"{WNIDS[1]}_{WNIDS[1]}_0"]["cls"]) == 0 and int(got[f"{WNIDS[0]}_{WNIDS[0]}_0"]["cls"]) == 1
    index = load_index(tmp_path / "out" / "train")
    assert index.spec.classes.names() == {0: "goldfish-ish", 1: "tench-ish"}
    assert index.listing["skipped_folders"] == {"count": 1, "first": [WNIDS[2]]}
    with pytest.raises(InputError, match="not in the class list"):
        imagefolder.make_source({**params, "unlisted": "error"}).records("train")
    ids = tmp_path / "split.txt"
    ids.write_text(f"{WNIDS[0]}_1\n{WNIDS[0]}_7\n")
    report = build(imagefolder.make_source({**params, "ids": str(ids)}), tmp_path / "out2", opts=OPTS)
    assert report.splits[0].samples == 1 and report.splits[0].failures == {"missing_image": 1}


def test_packaged_in11k_list() -> None:
    pairs = imagefolder.read_class_list("classes/larvseg_IN11K_IMAGE_IDS_to_CLASSES_dict.json")
    assert len(pairs) == 11276 and pairs[0] == ("n00005787", "benthos")


def test_plain_folder_keys_are_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "pass"
    (root / "0" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "0" / "a" / "x.jpg")
    Image.new("RGB", (8, 8), (4, 5, 6)).save(root / "0" / "y.jpg")
    (root / "0" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (root / "notes.txt").write_text("ignored")
    source = recipe_source(load_recipe("pass"), {"src": str(root)})
    report = build(source, tmp_path / "out", opts=OPTS)
    got = read_split(tmp_path / "out", "train")
    assert sorted(got) == ["0_a_x", "0_y"] and report.splits[0].failures == {"unreadable_image": 1}
    assert json.loads(got["0_a_x"]["json"]) == {"path": "0/a/x.jpg"}
    assert load_index(tmp_path / "out" / "train").spec.members() == ["jpg", "json"]
    text = imagefolder.report(report, {"src": str(root), "mode": "plain", "expected": 3})
    assert "2 samples written of 3 expected (SHORTFALL 1)" in text


def test_params(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="only apply to mode=classes"):
        imagefolder.make_source({"src": str(tmp_path), "mode": "plain", "class_list": "x.txt"})
    with pytest.raises(InputError, match="no class folders"):
        imagefolder.make_source({"src": str(tmp_path)})
    with pytest.raises(InputError, match="expected text"):
        imagefolder.make_source({"src": str(tmp_path), "mode": "plain", "expected": "1", "unlisted": "skip",
                                 "dataset": "p", "split": "train", "id_ext": True})


def test_split_option_from_the_cli(tmp_path: Path) -> None:
    """`datakit convert --split NAME` arrives as `splits`; it must name the folder source's one split."""
    make_tree(tmp_path / "in")
    assert imagefolder.make_source({"src": str(tmp_path / "in"), "splits": ["train"]}).splits() == ["train"]
    with pytest.raises(InputError, match="single split"):
        imagefolder.make_source({"src": str(tmp_path / "in"), "splits": ["val"]})
