"""`datakit build imagenets` in shard format, and `datakit submit imagenets`, on a generated S50 tree."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.errors import InputError
from datakit.imagenets.lists import load_lists
from datakit.imagenets.submit import MethodInfo, write_submission
from datakit.imagenets.testsizes import sizes_of_test_images
from datakit.shards.codecs import decode_mask, jpeg_header
from datakit.shards.index import load_index
from datakit.shards.tario import iter_samples
from datakit.imagenets.source import make_source, report
from imagenets_tree import Tree, expected_mask, image_size, make_tree, write_annotations

OPTS = BuildOptions(workers=1, progress=False)
LISTS = load_lists(50)


def read_split(folder: Path) -> dict[str, dict]:
    index = load_index(folder)
    samples = {}
    for entry in index.shards:
        with open(index.shard_path(entry), "rb") as f:
            for s in iter_samples(f, entry.url):
                samples[s["__key__"]] = s
    assert len(samples) == index.total
    return samples


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def ann_zip(tmp_path_factory) -> Path:
    return write_annotations(tmp_path_factory.mktemp("ann"), 50, as_zip=True)


@pytest.fixture(scope="module")
def built(tree, ann_zip, tmp_path_factory):
    out = tmp_path_factory.mktemp("s50")
    params = {"subset": 50, "imagenet": str(tree.root), "annotations": str(ann_zip)}
    rep = build(make_source(params), out, opts=BuildOptions(workers=1, progress=False, shard_size=400))
    return out, rep, params


def test_counts_per_split(built, tree):
    out, rep, params = built
    counts = {s.split: s.samples for s in rep.splits}
    assert counts == {"train": sum(tree.train_counts.values()), "train-semi": 500, "validation": 752, "test": 1682}
    assert all(not s.failures for s in rep.splits)
    train = read_split(out / "train")
    per_class = {}
    for s in train.values():
        meta = json.loads(s["json"])
        per_class[meta["wnid"]] = per_class.get(meta["wnid"], 0) + 1
    assert per_class == tree.train_counts
    text = report(rep, params)
    assert "non-standard" in text  # a 600-image train set is not ImageNet's
    lines = {line.split()[1]: line for line in text.splitlines()[1:5]}
    assert lines["validation"].rstrip().endswith("ok") and lines["test"].rstrip().endswith("ok")


def test_every_sample_has_the_split_members_and_labels(built, tree):
    out, _, _ = built
    for split in ("train", "train-semi", "validation", "test"):
        index = load_index(out / split)
        members = set(index.spec.members())
        assert members == ({"jpg", "cls", "json", "seg.png"} if split in ("train-semi", "validation") else {"jpg", "cls", "json"})
        assert index.spec.classes.ignore_index == 1000 and index.spec.classes.entries[0].name == "other"
        assert index.spec.notes["subset"] == 50
        for key, s in read_split(out / split).items():
            assert set(s) - {"__key__"} == members
            meta = json.loads(s["json"])
            assert int(s["cls"]) == LISTS.class_id(meta["wnid"])
            head = jpeg_header(s["jpg"])
            assert head is not None and head.components == 3
            assert (head.width, head.height) == tree.sizes[key]
            assert meta["path"].endswith(key + ".JPEG")


def test_val_and_test_keep_the_imagenet_label(built):
    out, _, _ = built
    samples = read_split(out / "test")
    for e in LISTS.test:
        meta = json.loads(samples[e.name[:-5]]["json"])
        assert meta["wnid"] == e.wnid and meta["imagenet_label"] == e.label
    moved = sum(e.wnid != e.label for e in LISTS.test)
    assert moved > 0  # some images change class in ImageNet-S


def test_odd_imagenet_files_become_rgb_jpegs(built, tree):
    out, _, _ = built
    seen: set[str] = set()
    for split in ("train", "train-semi", "validation", "test"):
        samples = read_split(out / split)
        odd_here = [n for n in tree.odd if n.rsplit(".", 1)[0] in samples]
        for name in odd_here:
            with Image.open(io.BytesIO(samples[name.rsplit(".", 1)[0]]["jpg"])) as img:
                assert img.format == "JPEG" and img.mode == "RGB", (name, tree.odd[name])
        seen.update(odd_here)
        assert load_index(out / split).extra["converted_images"] == len(odd_here)
    assert seen == set(tree.odd) and {"cmyk", "png", "grey"} <= set(tree.odd.values())


def test_masks_are_decoded_ids(built):
    out, _, _ = built
    for split, entries in (("train-semi", LISTS.semi), ("validation", LISTS.validation)):
        samples = read_split(out / split)
        for e in entries:
            s = samples[e.name.rsplit(".", 1)[0]]
            mask = decode_mask(s["seg.png"])
            assert mask.dtype == np.uint16
            np.testing.assert_array_equal(mask, expected_mask(LISTS, e.wnid, e.name))
            assert json.loads(s["json"])["annotated"] is True


def test_extracted_annotations_give_identical_shards(built, tree, tmp_path):
    out, _, _ = built
    folder = write_annotations(tmp_path / "ann", 50, as_zip=False)
    for ann in (folder, folder.parent):  # ImageNetS50/ itself or the folder holding it
        dst = tmp_path / f"out-{ann.name}"
        build(make_source({"subset": "50", "imagenet": str(tree.root), "annotations": str(ann), "splits": "validation"}),
              dst, opts=BuildOptions(workers=1, progress=False, shard_size=400))
        assert load_index(dst / "validation").fingerprint() == load_index(out / "validation").fingerprint()


def test_missing_annotation_gets_an_ignore_mask(tree, tmp_path):
    skip = frozenset({LISTS.validation[0].name, LISTS.validation[5].name})
    ann = write_annotations(tmp_path / "ann", 50, as_zip=True, skip=skip)
    with pytest.warns(UserWarning, match="2 image"):
        rep = build(make_source({"subset": 50, "imagenet": str(tree.root), "annotations": str(ann), "splits": "validation"}),
                    tmp_path / "out", opts=OPTS)
    assert rep.splits[0].samples == 752
    samples = read_split(tmp_path / "out" / "validation")
    for name in skip:
        s = samples[name[:-5]]
        assert json.loads(s["json"])["annotated"] is False
        assert (decode_mask(s["seg.png"]) == 1000).all()
        assert decode_mask(s["seg.png"]).shape == image_size(name)[::-1]
    assert load_index(tmp_path / "out" / "validation").extra["filled_masks"] == 2


def test_annotations_of_another_subset_are_rejected(tree, tmp_path):
    ann = write_annotations(tmp_path / "ann", 50, as_zip=True)
    wrong = tmp_path / "ImageNetS300-ffff.zip"
    with zipfile.ZipFile(ann) as src, zipfile.ZipFile(wrong, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename.replace("ImageNetS50/", "ImageNetS300/"), src.read(info))
    source = make_source({"subset": 50, "imagenet": str(tree.root), "annotations": str(wrong), "splits": "validation"})
    with pytest.raises(InputError, match="ImageNetS300"):
        build(source, tmp_path / "out", opts=OPTS)


def test_mask_with_foreign_ids_is_a_recorded_failure(tree, tmp_path):
    ann = write_annotations(tmp_path / "ann", 50, as_zip=False)
    e = LISTS.validation[2]
    w, h = image_size(e.name)
    bad = np.zeros((h, w, 3), np.uint8)
    bad[0, 0] = (77, 1, 0)  # id 333 is not an S50 class
    Image.fromarray(bad, "RGB").save(ann / "validation-segmentation" / e.wnid / e.mask_name)
    rep = build(make_source({"subset": 50, "imagenet": str(tree.root), "annotations": str(ann), "splits": "validation"}),
                tmp_path / "out", opts=OPTS)
    assert rep.splits[0].failures == {"bad_annotation": 1}
    assert rep.splits[0].samples == 751


def _flat_val(tree: Tree, root: Path, drop: int = 0) -> list[str]:
    """A flat val/ of symlinks to the generated images, without the first ``drop`` test images."""
    dropped = [e.name for e in LISTS.test[:drop]]
    (root / "val").mkdir(parents=True)
    for e in LISTS.validation + LISTS.test:
        if e.name not in dropped:
            os.symlink(tree.root / "val" / e.label / e.name, root / "val" / e.name)
    return dropped


def test_flat_val_layout_gives_the_same_images(built, tree, tmp_path):
    out, _, _ = built
    _flat_val(tree, tmp_path / "flat")
    flat = make_source({"subset": 50, "imagenet": str(tmp_path / "flat"), "splits": "validation,test"})
    build(flat, tmp_path / "out", opts=OPTS)
    for split in ("validation", "test"):
        a, b = read_split(out / split), read_split(tmp_path / "out" / split)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key]["jpg"] == b[key]["jpg"] and a[key]["cls"] == b[key]["cls"]
            assert json.loads(b[key]["json"])["path"] == f"val/{key}.JPEG"


def test_missing_images_error_names_them(tree, tmp_path):
    dropped = _flat_val(tree, tmp_path / "flat", drop=7)
    source = make_source({"subset": 50, "imagenet": str(tmp_path / "flat"), "splits": "test"})
    with pytest.raises(InputError) as err:
        build(source, tmp_path / "out", opts=OPTS)
    assert "7 source image(s) missing" in str(err.value)
    assert dropped[0] in str(err.value) and "--allow-missing" in str(err.value)


def test_allow_missing_warns_and_counts(tree, tmp_path):
    _flat_val(tree, tmp_path / "flat", drop=7)
    params = {"subset": 50, "imagenet": str(tmp_path / "flat"), "splits": "test", "allow_missing": True}
    with pytest.warns(UserWarning, match="7 source image"):
        rep = build(make_source(params), tmp_path / "out", opts=OPTS)
    assert rep.splits[0].samples == 1682 - 7
    assert load_index(tmp_path / "out" / "test").failures == {"missing_image": 7}
    assert "7 source image(s) missing" in report(rep, params)


def test_missing_train_folder(tree, tmp_path):
    root = tmp_path / "imnet"
    (root / "train").mkdir(parents=True)
    for wnid in LISTS.wnids[1:]:
        os.symlink(tree.root / "train" / wnid, root / "train" / wnid)
    params = {"subset": 50, "imagenet": str(root), "splits": "train"}
    with pytest.raises(InputError, match=f"train/{LISTS.wnids[0]}/"):
        build(make_source(params), tmp_path / "out", opts=OPTS)
    with pytest.warns(UserWarning):
        rep = build(make_source({**params, "allow_missing": "true"}), tmp_path / "out2", opts=OPTS)
    assert rep.splits[0].samples == sum(tree.train_counts.values()) - tree.train_counts[LISTS.wnids[0]]
    assert load_index(tmp_path / "out2" / "train").listing["missing_class_folders"] == [f"train/{LISTS.wnids[0]}/"]
    assert "1 class folder(s) missing" in report(rep, {**params, "allow_missing": True})


# --- submission -----------------------------------------------------------------------------


def _predictions(root: Path) -> Path:
    for e in LISTS.test:
        w, h = image_size(e.name)
        ids = np.full((h, w), LISTS.class_id(e.wnid), np.int32)
        rgb = np.stack([ids % 256, ids // 256, np.zeros_like(ids)], -1).astype(np.uint8)
        (root / e.wnid).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb, "RGB").save(root / e.wnid / e.mask_name)
    return root


@pytest.fixture(scope="module")
def preds(tmp_path_factory) -> Path:
    return _predictions(tmp_path_factory.mktemp("pred"))


def test_test_sizes_agree_across_sources(built, tree):
    out, _, _ = built
    from_shards = sizes_of_test_images(str(out), 50)
    assert from_shards == sizes_of_test_images(str(tree.root), 50)
    assert len(from_shards) == 1682
    assert from_shards == {f"{e.wnid}/{e.name[:-5]}": tree.sizes[e.name[:-5]] for e in LISTS.test}


def test_submission_zip(built, preds, tmp_path):
    out, _, _ = built
    match = tmp_path / "match.json"
    match.write_text(json.dumps({str(i): i for i in range(51)}))
    info = MethodInfo("my method", "IN-1k", "self-supervised", "ResNet-50", "https://x.y", "clusters")
    rep = write_submission(str(preds), 50, str(out / "test"), str(tmp_path / "sub.zip"), info, str(match))
    assert rep.predictions == 1682 and rep.match
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        names = set(zf.namelist())
        assert names == {f"{e.wnid}/{e.mask_name}" for e in LISTS.test} | {"method.txt", "match.json"}
        assert zf.read("method.txt").decode() == (
            "Method name: my method\nTraining data: IN-1k\nTraining scheme: self-supervised\n"
            "Networks: ResNet-50\nPaper/Project link: https://x.y\nMethod description: clusters")
        e = LISTS.test[3]
        assert zf.read(f"{e.wnid}/{e.mask_name}") == (preds / e.wnid / e.mask_name).read_bytes()
    again = write_submission(str(preds), 50, str(out), str(tmp_path / "sub2.zip"), info, str(match))
    assert (tmp_path / "sub.zip").read_bytes() == (tmp_path / "sub2.zip").read_bytes() and again.predictions == 1682


def _broken(preds: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pred"
    shutil.copytree(preds, copy)
    return copy


def test_submission_errors_name_the_file(built, preds, tmp_path):
    out, _, _ = built
    pred = _broken(preds, tmp_path)
    gone, small, grey, moved = LISTS.test[0], LISTS.test[10], LISTS.test[20], LISTS.test[30]
    (pred / gone.wnid / gone.mask_name).unlink()
    Image.new("RGB", (5, 5)).save(pred / small.wnid / small.mask_name)
    w, h = image_size(grey.name)
    Image.new("L", (w, h)).save(pred / grey.wnid / grey.mask_name)
    (pred / "n99999999").mkdir()
    os.replace(pred / moved.wnid / moved.mask_name, pred / "n99999999" / moved.mask_name)
    target = tmp_path / "sub.zip"
    with pytest.raises(InputError) as err:
        write_submission(str(pred), 50, str(out), str(target), MethodInfo())
    msg = str(err.value)
    assert msg.startswith("4 of 1682")
    assert f"{gone.wnid}/{gone.mask_name} is missing" in msg
    sw, sh = image_size(small.name)
    assert f"{small.wnid}/{small.mask_name} is 5x5, the image is {sw}x{sh}" in msg
    assert f"{grey.wnid}/{grey.mask_name} is not an 8-bit RGB PNG" in msg
    assert "found under n99999999/" in msg
    assert not target.exists() and not Path(str(target) + ".tmp").exists()


def test_submission_rejects_a_bad_match(built, preds, tmp_path):
    out, _, _ = built
    match = tmp_path / "match.json"
    match.write_text(json.dumps({"1": 77}))
    with pytest.raises(InputError, match="not a class of ImageNetS50"):
        write_submission(str(preds), 50, str(out), str(tmp_path / "s.zip"), MethodInfo(), str(match))


def test_cli_submit(built, preds, tmp_path):
    import typer
    from typer.testing import CliRunner

    from datakit.cli import imagenets as imagenets_cli

    app = typer.Typer()
    app.add_typer(imagenets_cli.app)
    out, _, _ = built
    res = CliRunner().invoke(app, ["submit", "imagenets", "--pred", str(preds), "--subset", "50", "--images", str(out),
                                   "--out", str(tmp_path / "s.zip"), "--method", "m", "--arch", "ViT-S/16"])
    assert res.exit_code == 0, res.output
    assert "1682 predictions" in res.output
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        assert "Networks: ViT-S/16\n" in zf.read("method.txt").decode()


def test_all_subsets_share_one_output_with_their_own_ids(tree, tmp_path):
    params = {"subset": "all", "imagenet": str(tree.root), "splits": "test", "allow_missing": True}
    with pytest.warns(UserWarning):
        rep = build(make_source(params), tmp_path, opts=OPTS)
    assert [s.split for s in rep.splits] == ["s50-test", "s300-test", "s919-test"]
    assert rep.splits[0].samples == 1682 and rep.splits[0].failures == {}
    s300, s919 = load_lists(300), load_lists(919)
    ours = {e.name for e in LISTS.test}
    assert rep.splits[1].samples == sum(e.name in ours for e in s300.test) > 0
    assert rep.splits[2].failures["missing_image"] == sum(e.name not in ours for e in s919.test)
    a, b = read_split(tmp_path / "s50-test"), read_split(tmp_path / "s919-test")
    both = sorted(set(a) & set(b))
    assert both
    for key in both:  # same image, same class wnid, different id space
        wa, wb = json.loads(a[key]["json"])["wnid"], json.loads(b[key]["json"])["wnid"]
        assert wa == wb and int(a[key]["cls"]) == LISTS.class_id(wa) and int(b[key]["cls"]) == s919.class_id(wa)
    assert load_index(tmp_path / "s919-test").spec.classes.max_id == 919
    text = report(rep, params)
    assert [line.split()[0] for line in text.splitlines()[1:4]] == ["S50", "S300", "S919"]


def test_annotations_without_a_split_are_an_error(tree, tmp_path):
    ann = write_annotations(tmp_path / "ann", 50, as_zip=False)
    shutil.rmtree(ann / "train-semi-segmentation")
    source = make_source({"subset": 50, "imagenet": str(tree.root), "annotations": str(ann), "splits": "train-semi"})
    with pytest.raises(InputError, match="none of the 500 train-semi-segmentation masks"):
        build(source, tmp_path / "out", opts=OPTS)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_members_are_read_by_offset_and_checked(tmp_path, method):
    from datakit.errors import SampleError
    from datakit.imagenets.inputs import decode_official_mask, open_annotations, read_mask_bytes

    e = LISTS.validation[0]
    ids = expected_mask(LISTS, e.wnid, e.name)
    buf = io.BytesIO()
    Image.fromarray(np.stack([ids % 256, ids // 256, ids * 0], -1).astype(np.uint8), "RGB").save(buf, "PNG")
    path = tmp_path / "ImageNetS50-x.zip"
    rel = f"validation-segmentation/{e.wnid}/{e.mask_name}"
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("ImageNetS50/README.txt", b"not a mask")
        zf.writestr(f"ImageNetS50/{rel}", buf.getvalue())
    ref = open_annotations(str(tmp_path), 50).lookup(rel)
    assert ref is not None and read_mask_bytes(ref) == buf.getvalue()
    np.testing.assert_array_equal(decode_official_mask(read_mask_bytes(ref), 50, "x"), ids)
    raw = bytearray(path.read_bytes())
    start = raw.find(b"PK\x03\x04", ref.offset) + 30 + len(f"ImageNetS50/{rel}")
    raw[start + 40] ^= 0xFF  # damage the member's data
    path.write_bytes(bytes(raw))
    with pytest.raises(SampleError) as err:
        read_mask_bytes(ref)
    assert err.value.reason == "corrupt_annotation"
