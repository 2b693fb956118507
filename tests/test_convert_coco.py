"""COCO converters on the real fixtures: masks checked pixel for pixel against pycocotools' annToMask."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from datakit.pipeline import BuildOptions, build
from datakit.errors import BuildError, InputError
from datakit.shards import codecs
from datakit.shards.index import load_index
from datakit import catalog
from datakit.sources import coco
from datakit.sources.coco import twentyk as coco20k
from helpers_foundation import read_split

FIX = Path(__file__).parent / "fixtures" / "coco"
OPTS = BuildOptions(workers=1, progress=False)




def write_jpeg(path: Path, w: int, h: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def contiguous(categories: list[dict]) -> dict[int, int]:
    """The test's own rank-of-COCO-id map (1..80), from the JSON's categories."""
    return {cid: i + 1 for i, cid in enumerate(sorted(int(c["id"]) for c in categories))}


def expected_semantic(api: COCO, image_id: int, crowd: str, order: str) -> np.ndarray:
    """Paint the documented rule independently with pycocotools' own annToMask."""
    info = api.loadImgs([image_id])[0]
    ranks = contiguous(api.dataset["categories"])
    out = np.zeros((info["height"], info["width"]), np.uint8)
    anns = api.loadAnns(api.getAnnIds(imgIds=[image_id], iscrowd=None))
    crowds = [a for a in anns if a["iscrowd"]]
    normal = [a for a in anns if not a["iscrowd"]]
    if crowd == "ignore":
        for a in crowds:
            out[api.annToMask(a) == 1] = 255
    elif crowd == "class":
        normal = anns
    if order == "area_desc":
        normal = sorted(normal, key=lambda a: -int(api.annToMask(a).sum()))  # stable: file order on ties
    for a in normal:
        out[api.annToMask(a) == 1] = ranks[a["category_id"]]
    return out


@pytest.fixture()
def coco448(tmp_path: Path) -> Path:
    """A COCO root with the real 448263 annotations and a generated 320x240 JPEG (the real one is not shipped)."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    shutil.copy(FIX / "instances_val2017_448263.json", root / "annotations" / "instances_val2017.json")
    write_jpeg(root / "val2017" / "000000448263.jpg", 320, 240)
    return root


@pytest.mark.parametrize("crowd,order", [("ignore", "area_desc"), ("class", "area_desc"), ("skip", "file")])
def test_semantic80_matches_anntomask(coco448: Path, tmp_path: Path, crowd: str, order: str) -> None:
    src = coco.make_source({"src": str(coco448), "splits": ["val"], "crowd": crowd, "order": order})
    report = build(src, tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 1
    sample = read_split(tmp_path / "out", "val")["000000448263"]
    mask = codecs.decode_mask(sample["seg.png"])
    api = COCO(str(coco448 / "annotations" / "instances_val2017.json"))
    want = expected_semantic(api, 448263, crowd, order)
    assert mask.dtype == np.uint8 and mask.shape == (240, 320)
    np.testing.assert_array_equal(mask, want)
    assert (255 in np.unique(mask)) == (crowd == "ignore")
    meta = json.loads(sample["json"])
    assert meta["image_id"] == 448263 and meta["instances"] == 16 and meta["crowd"] == 1
    index = load_index(tmp_path / "out" / "val")
    notes = index.spec.notes
    assert index.listing["found_samples"] == 1 and index.listing["expected_samples"] == 5000
    assert notes["crowd"].startswith(crowd) and notes["painting_order"].startswith(order)


def test_semantic80_class_table_and_report(coco448: Path, tmp_path: Path) -> None:
    src = coco.make_source({"src": str(coco448), "splits": "val"})
    report = build(src, tmp_path / "out", opts=OPTS)
    table = load_index(tmp_path / "out" / "val").spec.classes
    assert table.ignore_index == 255 and len(table.entries) == 81
    names = table.names()
    assert names[0] == "background" and names[1] == "person" and names[33] == "sports ball" and names[80] == "toothbrush"
    text = coco.report(report, {"src": str(coco448), "splits": "val"})
    assert "SHORTFALL 4,999" in text


def test_real_images_polygons(tmp_path: Path) -> None:
    """Four real val2017 photos with person polygons (mmpose's subset): sizes and masks must agree."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copytree(FIX / "mmpose_person" / "val2017", root / "val2017")
    shutil.copy(FIX / "mmpose_person" / "person_keypoints_val2017_subset.json", root / "annotations" / "instances_val2017.json")
    build(coco.make_source({"src": str(root), "splits": "val"}), tmp_path / "out", opts=OPTS)
    got = read_split(tmp_path / "out", "val")
    api = COCO(str(root / "annotations" / "instances_val2017.json"))
    assert len(got) == 4
    for iid in api.getImgIds():
        key = f"{iid:012d}"
        assert got[key]["jpg"] == (root / "val2017" / f"{key}.jpg").read_bytes()  # passed through untouched
        mask = codecs.decode_mask(got[key]["seg.png"])
        union = np.zeros_like(mask, dtype=bool)
        for a in api.loadAnns(api.getAnnIds(imgIds=[iid])):
            union |= api.annToMask(a) == 1
        np.testing.assert_array_equal(mask, np.where(union, 1, 0))


def test_compressed_rle_real_images(tmp_path: Path) -> None:
    """Compressed-string RLE (panopticapi's detection-format sample) on its two real photos."""
    det = json.loads((FIX / "panoptic" / "panoptic_coco_detection_format.json").read_text())
    cats = json.loads((FIX / "instances_val2017_448263.json").read_text())["categories"]
    thing_ids = {c["id"] for c in cats}
    det["annotations"] = [a for a in det["annotations"] if a["category_id"] in thing_ids]
    det["categories"] = cats
    assert all(isinstance(a["segmentation"]["counts"], str) for a in det["annotations"])
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(det))
    shutil.copytree(FIX / "panoptic" / "val2017", root / "val2017")
    build(coco.make_source({"src": str(root), "splits": "val"}), tmp_path / "out", opts=OPTS)
    got = read_split(tmp_path / "out", "val")
    api = COCO(str(root / "annotations" / "instances_val2017.json"))
    for iid in (142238, 439180):
        mask = codecs.decode_mask(got[f"{iid:012d}"]["seg.png"])
        np.testing.assert_array_equal(mask, expected_semantic(api, iid, "ignore", "area_desc"))
        assert len(set(np.unique(mask)) - {0, 255}) >= 1


def test_bad_inputs_are_counted(coco448: Path, tmp_path: Path) -> None:
    path = coco448 / "annotations" / "instances_val2017.json"
    obj = json.loads(path.read_text())
    obj["images"].append({"id": 7, "file_name": "000000000007.jpg", "height": 50, "width": 60})
    obj["images"].append({"id": 8, "file_name": "000000000008.jpg", "height": 50, "width": 60})
    obj["images"].append({"id": 9, "file_name": "000000000009.jpg", "height": 50, "width": 60})
    obj["annotations"].append({"id": 1, "image_id": 8, "category_id": 12, "iscrowd": 0, "segmentation": [[1, 1, 20, 1, 20, 20]]})
    obj["annotations"].append({"id": 2, "image_id": 9, "category_id": 1, "iscrowd": 1,
                               "segmentation": {"counts": [5, 10], "size": [50, 60]}})
    path.write_text(json.dumps(obj))
    write_jpeg(coco448 / "val2017" / "000000000007.jpg", 61, 50)   # size differs from the JSON
    write_jpeg(coco448 / "val2017" / "000000000008.jpg", 60, 50)   # category 12 is not a COCO thing id
    write_jpeg(coco448 / "val2017" / "000000000009.jpg", 60, 50)   # RLE runs do not cover the image
    write_jpeg(coco448 / "val2017" / "000000000010.jpg", 60, 50)   # not in the JSON at all
    (coco448 / "val2017" / "000000448263.jpg").write_bytes(b"not a jpeg")
    report = build(coco.make_source({"src": str(coco448), "splits": "val"}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 0
    assert report.splits[0].failures == {"bad_annotation": 1, "mask_size_mismatch": 1, "missing_annotation": 1,
                                         "unknown_label": 1, "unreadable_image": 1}
    listed = {f["key"]: f["origin"] for f in load_index(tmp_path / "out" / "val").extra["failed_samples"]}
    assert listed["000000000010"].endswith("000000000010.jpg")
    with pytest.raises(BuildError):
        build(coco.make_source({"src": str(coco448), "splits": "val"}), tmp_path / "strict",
              opts=BuildOptions(workers=1, progress=False, strict=True))


def test_stuff171_from_generated_maps(tmp_path: Path) -> None:
    rows = json.loads(catalog.manifest("classes/coco_stuff171.json").read_text())
    to_train = {r["png_value"]: r["trainId"] for r in rows}
    root = tmp_path / "stuff"
    for split in ("val",):
        (root / f"{split}2017").mkdir(parents=True)
        (root / "stuffthingmaps_trainval2017" / f"{split}2017").mkdir(parents=True)
    values = np.array(sorted(to_train) + [255], dtype=np.uint8)
    raw = np.resize(values, (24, 32))
    Image.fromarray(raw, "L").save(root / "stuffthingmaps_trainval2017" / "val2017" / "000000000001.png")
    write_jpeg(root / "val2017" / "000000000001.jpg", 32, 24)
    bad = raw.copy()
    bad[0, 0] = 11  # a thing id without masks (street sign) must not appear
    Image.fromarray(bad, "L").save(root / "stuffthingmaps_trainval2017" / "val2017" / "000000000002.png")
    write_jpeg(root / "val2017" / "000000000002.jpg", 32, 24)
    Image.fromarray(raw[:20], "L").save(root / "stuffthingmaps_trainval2017" / "val2017" / "000000000003.png")
    write_jpeg(root / "val2017" / "000000000003.jpg", 32, 24)
    write_jpeg(root / "val2017" / "000000000004.jpg", 32, 24)  # no map
    report = build(coco.make_source({"src": str(root), "kind": "stuff171", "splits": "val"}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].failures == {"mask_size_mismatch": 1, "missing_mask": 1, "unknown_label": 1}
    got = read_split(tmp_path / "out", "val")
    mask = codecs.decode_mask(got["000000000001"]["seg.png"])
    want = np.vectorize(lambda v: to_train.get(int(v), 255))(raw)
    np.testing.assert_array_equal(mask, want)
    assert set(np.unique(mask)) == set(range(171)) | {255}
    assert load_index(tmp_path / "out" / "val").spec.classes.names()[170] == rows[-1]["name"]


def test_coco20k_instances_and_eval_json(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2014").mkdir()
    obj = json.loads((FIX / "instances_val2017_448263.json").read_text())
    obj["images"][0]["file_name"] = "COCO_train2014_000000448263.jpg"
    obj["images"].append({"id": 5, "file_name": "COCO_train2014_000000000005.jpg", "height": 10, "width": 10})
    obj["annotations"].append({"id": 99, "image_id": 5, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 2, 2],
                               "area": 4, "segmentation": [[0, 0, 2, 0, 2, 2]]})
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(obj))
    write_jpeg(root / "train2014" / "COCO_train2014_000000448263.jpg", 320, 240)
    filelist = tmp_path / "list.txt"
    filelist.write_text("train2014/COCO_train2014_000000448263.jpg\ntrain2014/COCO_train2014_000000000777.jpg\n")
    params = {"src": str(root), "kind": "instances20k", "filelist": str(filelist)}
    report = build(coco.make_source(params), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 1 and report.splits[0].failures == {"missing_annotation": 1}
    meta = json.loads(read_split(tmp_path / "out", "train")["COCO_train2014_000000448263"]["json"])
    api = COCO(str(root / "annotations" / "instances_train2014.json"))
    anns = {a["id"]: a for a in api.loadAnns(api.getAnnIds(imgIds=[448263], iscrowd=None))}
    assert sorted(i["id"] for i in meta["instances"]) == sorted(anns)
    ranks = contiguous(obj["categories"])
    from pycocotools import mask as mask_utils
    for inst in meta["instances"]:
        ann = anns[inst["id"]]
        assert inst["category_id"] == ann["category_id"] and inst["label"] == ranks[ann["category_id"]]
        assert inst["iscrowd"] == ann["iscrowd"] and inst["bbox"] == [float(v) for v in ann["bbox"]]
        np.testing.assert_array_equal(mask_utils.decode(inst["rle"]), api.annToMask(ann))
    assert sum(i["iscrowd"] for i in meta["instances"]) == 1
    text = coco.report(report, params)
    assert "SHORTFALL 19,816" in text
    sel = json.loads((tmp_path / "out" / "train" / coco20k.SEL_NAME).read_text())
    assert [i["id"] for i in sel["images"]] == [448263]
    assert {a["id"] for a in sel["annotations"]} == set(anns) and len(sel["categories"]) == 80
    table = load_index(tmp_path / "out" / "train").spec.classes
    assert table.names()[90] == "toothbrush" and 12 not in table.names()


def test_coco20k_packaged_list() -> None:
    entries = coco20k.read_filelist("zutis/coco_20k_filenames.txt")
    ids = {coco20k.image_id_of(e) for e in entries}
    assert len(entries) == len(ids) == coco20k.EXPECTED["train"]
    assert all(e.startswith("train2014/COCO_train2014_") for e in entries)


def test_params_are_validated(coco448: Path) -> None:
    with pytest.raises(InputError, match="unknown parameter"):
        coco.make_source({"src": str(coco448), "colour": "red"})
    with pytest.raises(InputError, match="not one of"):
        coco.make_source({"src": str(coco448), "crowd": "maybe"})
    with pytest.raises(InputError, match="do not apply"):
        coco.make_source({"src": str(coco448), "kind": "stuff171", "crowd": "class"})
    with pytest.raises(InputError, match="dataset root"):
        coco.make_source({"kind": "semantic80"})
    with pytest.raises(InputError, match="train images not found"):
        coco.make_source({"src": str(coco448), "splits": "train"}).records("train")
    (coco448 / "train2017").mkdir()
    with pytest.raises(InputError, match="annotations not found"):
        coco.make_source({"src": str(coco448), "splits": "train"}).records("train")


def test_resume_rebuilds_only_missing_shards(coco448: Path, tmp_path: Path) -> None:
    for i in range(3):
        write_jpeg(coco448 / "val2017" / f"00000000000{i}.jpg", 40, 30, seed=i)
    path = coco448 / "annotations" / "instances_val2017.json"
    obj = json.loads(path.read_text())
    obj["images"] += [{"id": i, "file_name": f"00000000000{i}.jpg", "height": 30, "width": 40} for i in range(3)]
    path.write_text(json.dumps(obj))
    src = coco.make_source({"src": str(coco448), "splits": "val"})
    opts = BuildOptions(workers=1, progress=False, shard_size=2)
    build(src, tmp_path / "out", opts=opts)
    first = {p.name: p.read_bytes() for p in (tmp_path / "out" / "val").glob("*.tar")}
    assert len(first) == 2
    (tmp_path / "out" / "val" / "val-000001.stats.json").unlink()
    (tmp_path / "out" / "val" / "val-000001.tar").unlink()
    report = build(coco.make_source({"src": str(coco448), "splits": "val"}), tmp_path / "out",
                   opts=BuildOptions(workers=1, progress=False, shard_size=2, resume=True))
    assert report.splits[0].skipped_shards == 1 and report.samples_written == 2
    assert {p.name: p.read_bytes() for p in (tmp_path / "out" / "val").glob("*.tar")} == first
    empty = codecs.decode_mask(read_split(tmp_path / "out", "val")["000000000001"]["seg.png"])
    assert empty.shape == (30, 40) and not empty.any()  # no annotations: all background


def test_two_workers_give_identical_shards(coco448: Path, tmp_path: Path) -> None:
    """Sources and records travel to spawned workers; the output does not depend on the worker count."""
    for i in range(3):
        write_jpeg(coco448 / "val2017" / f"00000000000{i}.jpg", 40, 30, seed=i)
    path = coco448 / "annotations" / "instances_val2017.json"
    obj = json.loads(path.read_text())
    obj["images"] += [{"id": i, "file_name": f"00000000000{i}.jpg", "height": 30, "width": 40} for i in range(3)]
    path.write_text(json.dumps(obj))
    outs = {}
    for workers in (1, 2):
        opts = BuildOptions(workers=workers, progress=False, shard_size=2)
        build(coco.make_source({"src": str(coco448), "splits": "val"}), tmp_path / f"w{workers}", opts=opts)
        folder = tmp_path / f"w{workers}" / "val"
        outs[workers] = {p.name: p.read_bytes() for p in [*folder.glob("*.tar"), folder / "index.json"]}
    assert outs[1] == outs[2] and len(outs[1]) == 3
