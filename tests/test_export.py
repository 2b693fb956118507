"""`datakit export` on real built outputs, checked against the reference preparation procedures.

ADE-847 against the fixture TIFFs made the way MaskFormer's prepare_ade20k_full_sem_seg.py makes
them (OpenCV INTER_NEAREST), ADE-150 against the raw ADEChallengeData2016 PNGs (mmseg) and their
``img - 1`` (detectron2), COCO-Stuff against mmseg's ``clsID_to_trID`` rule, and safety: resumable,
foreign files refused, keys that would escape ``--out`` refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datakit.errors import CorruptShardError, InputError
from datakit.export import ExportOptions, export
from datakit.shards.index import load_index, write_index
from datakit.shards.reader import iter_split
from datakit.shards.tario import TarStream
from helpers_foundation import ListSource, make_items
from helpers_outputs import ADE847_NAMES, FIX, built

DATAKIT = [sys.executable, "-m", "datakit.cli.main"]
UNUSED_STUFF_VALUES = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}   # raw PNG values of the 11 unused thing ids


def run(*args, env=None):
    return subprocess.run([*DATAKIT, *map(str, args)], capture_output=True, text=True, env=env)


def opts(layout: str, **kw) -> ExportOptions:
    return ExportOptions(layout=layout, workers=1, progress=False, **kw)


def raw_samples(split_dir: Path) -> dict[str, dict]:
    return {s["__key__"]: s for s in iter_split(load_index(split_dir), decode=False)}


def decoded(split_dir: Path) -> dict[str, dict]:
    return {s["__key__"]: s for s in iter_split(load_index(split_dir))}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ade847_detectron2_is_maskformers_layout(tmp_path_factory, tmp_path):
    out = built("ade847", tmp_path_factory)
    report = export(str(out), tmp_path / "x", opts("detectron2"))
    assert report.splits[0].samples == 3 and report.splits[0].written == 6
    stored = raw_samples(out / "train")
    for name in ADE847_NAMES:
        tif = tmp_path / "x" / "annotations_detectron2" / "training" / f"{name}.tif"
        with Image.open(tif) as img:
            assert img.format == "TIFF" and img.mode == "I;16"
            got = np.array(img)
        ref = np.array(Image.open(FIX / "ade20k_full" / "A847_cv2" / f"{name}.png"))  # MaskFormer's steps with cv2
        assert got.dtype == np.uint16 and np.array_equal(got, ref) and 65535 in got
        jpg = tmp_path / "x" / "images_detectron2" / "training" / f"{name}.jpg"
        assert jpg.read_bytes() == stored[name]["jpg"]  # the stored bytes, not re-encoded
    manifest = json.loads((tmp_path / "x" / "datakit-export.json").read_text())
    config = manifest["exports"]["detectron2:ade847/train"]["config"]
    assert config["ignore_label"] == 65535 and "gt_ext='tif'" in config["register"]


def test_ade847_tifs_equal_maskformers_byte_for_byte(tmp_path_factory, tmp_path):
    """A847_maskformer/ holds the TIFFs MaskFormer's prepare_ade20k_full_sem_seg.py writes (OpenCV nearest)."""
    export(str(built("ade847", tmp_path_factory)), tmp_path / "x", opts("detectron2"))
    for name in ADE847_NAMES:
        ref = FIX / "ade20k_full" / "A847_maskformer" / f"{name}.tif"
        mine = tmp_path / "x" / "annotations_detectron2" / "training" / f"{name}.tif"
        assert np.array_equal(np.array(Image.open(mine)), np.array(Image.open(ref)))
        assert mine.read_bytes() == ref.read_bytes()


def test_ade150_mmseg_gives_back_the_raw_pngs_and_detectron2_the_reduced(tmp_path_factory, tmp_path):
    out = built("ade150", tmp_path_factory)
    export(str(out), tmp_path / "mm", opts("mmseg"))
    export(str(out), tmp_path / "d2", opts("detectron2"))
    for i in (1, 2, 3):
        key = f"ADE_val_0000000{i}"
        raw = np.array(Image.open(FIX / "ade20k" / "annotations" / "validation" / f"{key}.png"))
        with Image.open(tmp_path / "mm" / "annotations" / "validation" / f"{key}.png") as img:
            assert img.mode == "L" and np.array_equal(np.array(img), raw)  # stock ADE20KDataset, reduce_zero_label=True
        d2 = np.array(Image.open(tmp_path / "d2" / "annotations_detectron2" / "validation" / f"{key}.png"))
        assert np.array_equal(d2, (raw.astype(np.int16) - 1).astype(np.uint8))  # prepare_ade20k_sem_seg.py: img - 1
        jpg = (FIX / "ade20k" / "images" / "validation" / f"{key}.jpg").read_bytes()
        assert (tmp_path / "mm" / "images" / "validation" / f"{key}.jpg").read_bytes() == jpg
        assert (tmp_path / "d2" / "images" / "validation" / f"{key}.jpg").read_bytes() == jpg
    config = json.loads((tmp_path / "mm" / "datakit-export.json").read_text())["exports"]["mmseg:ade150/val"]["config"]
    assert config["reduce_zero_label"] is True and config["seg_map_suffix"] == ".png"


def test_cocostuff_label_train_ids(tmp_path_factory, tmp_path):
    out = built("cocostuff171", tmp_path_factory)
    src = out.parent / "src" / "stuffthingmaps_trainval2017" / "val2017"
    export(str(out), tmp_path / "mm", opts("mmseg"))
    export(str(out), tmp_path / "d2", opts("detectron2"))
    kept = [v for v in range(182) if v not in UNUSED_STUFF_VALUES]
    lut = np.full(256, 255, np.uint8)
    lut[kept] = np.arange(171)  # mmseg clsID_to_trID: the remaining values in order
    for key in ("000000000000", "000000000001", "000000000002"):
        want = lut[np.array(Image.open(src / f"{key}.png"))]
        mm = np.array(Image.open(tmp_path / "mm" / "annotations" / "val2017" / f"{key}_labelTrainIds.png"))
        d2 = np.array(Image.open(tmp_path / "d2" / "stuffthingmaps_detectron2" / "val2017" / f"{key}.png"))
        assert np.array_equal(mm, want) and np.array_equal(d2, want)
        assert (tmp_path / "mm" / "images" / "val2017" / f"{key}.jpg").exists()
        assert (tmp_path / "d2" / "val2017" / f"{key}.jpg").exists()


def test_generic_layouts_keep_the_ids(tmp_path_factory, tmp_path):
    voc = built("voc2012", tmp_path_factory)
    export(str(voc), tmp_path / "voc", opts("mmseg"))
    for sid in ("2007_000032", "2007_000033"):
        raw = np.array(Image.open(FIX / "voc" / "SegmentationClass" / f"{sid}.png"))  # palette indices
        assert np.array_equal(np.array(Image.open(tmp_path / "voc" / "annotations" / "train" / f"{sid}.png")), raw)
        sal = np.array(Image.open(tmp_path / "voc" / "saliency" / "train" / f"{sid}.png"))
        assert set(np.unique(sal)) <= {0, 255} and np.array_equal(sal == 255, (raw > 0) & (raw < 255))
    ins = built("imagenets", tmp_path_factory)
    export(str(ins), tmp_path / "ins", opts("detectron2"))
    masks = decoded(ins / "validation")
    files = sorted((tmp_path / "ins" / "annotations_detectron2" / "validation").iterdir())
    assert len(files) == len(masks) == 752 and all(f.suffix == ".tif" for f in files)
    for f in files[:20]:
        got = np.array(Image.open(f))
        assert got.dtype == np.uint16 and np.array_equal(got, masks[f.stem]["seg.png"]) and 1000 in got
    entry = json.loads((tmp_path / "ins" / "datakit-export.json").read_text())["exports"]["detectron2:imagenets50/validation"]
    assert entry["config"]["ignore_label"] == 1000


def test_imagefolder_layouts(tmp_path_factory, tmp_path):
    out = built("imagenet21k", tmp_path_factory)
    export(str(out), tmp_path / "in", opts("imagefolder"))
    stored = raw_samples(out / "train")
    names = load_index(out / "train").spec.classes.names()
    wnids = {e.id: e.extra["wnid"] for e in load_index(out / "train").spec.classes.entries}
    written = tree(tmp_path / "in" / "train")
    assert len(written) == len(stored) == 5
    for key, s in stored.items():
        assert written[f"{wnids[int(s['cls'])]}/{key}.jpg"] == s["jpg"]
    folders = json.loads((tmp_path / "in" / "datakit-export.json").read_text())["exports"]["imagefolder:imagenet21k/train"]
    listed = {f["folder"]: (f["id"], f["name"]) for f in folders["class_folders"]}
    assert listed["n00005787"] == (0, names[0]) and len(listed) == len(names)
    tv = pytest.importorskip("torchvision.datasets")
    ds = tv.ImageFolder(str(tmp_path / "in" / "train"))
    assert ds.classes == ["n00005787", "n00006484", "n00007846"] and len(ds) == 5
    plain = built("pass", tmp_path_factory)
    export(str(plain), tmp_path / "pass", opts("imagefolder"))
    assert tree(tmp_path / "pass" / "train") == {f"{k}.jpg": s["jpg"] for k, s in raw_samples(plain / "train").items()}


@pytest.mark.parametrize("recipe,layout,needle", [
    ("ade150", "imagefolder", "has masks and no image-level label"),
    ("coco20k", "mmseg", "has no mask member"),
    ("imagenet21k", "detectron2", "use --layout imagefolder"),
])
def test_layouts_that_cannot_hold_a_split_say_so(recipe, layout, needle, tmp_path_factory, tmp_path):
    proc = run("export", built(recipe, tmp_path_factory), "--layout", layout, "--out", tmp_path / "x")
    assert proc.returncode != 0 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_interrupted_export_resumes_and_foreign_files_are_refused(tmp_path_factory, tmp_path):
    out = built("imagenets", tmp_path_factory)  # 752 samples in 376 shards
    clean = tmp_path / "clean"
    export(str(out), clean, opts("mmseg"))
    keys = list(raw_samples(out / "validation"))
    dest = tmp_path / "x"
    victim = dest / "images" / "validation" / f"{keys[300]}.jpg"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"someone else's file")
    mine = dest / "images" / "validation" / "notes.txt"
    mine.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists with other content"):
        export(str(out), dest, opts("mmseg"))
    assert victim.read_bytes() == b"someone else's file"
    done = (dest / ".datakit-export" / "mmseg" / "imagenets50" / "validation")
    assert 300 <= len(list(done.iterdir())) < 376  # the other shards finished before the error surfaced
    victim.unlink()
    report = export(str(out), dest, opts("mmseg"))
    assert report.splits[0].skipped_shards == len(list(done.iterdir())) - 1
    assert report.splits[0].written == 4  # the victim's shard: 2 images + 2 masks
    got = tree(dest)
    assert got.pop("images/validation/notes.txt") == b"keep me"
    assert got == tree(clean)  # equal to an uninterrupted export, byte for byte
    victim.write_bytes(b"changed again")
    (done / "validation-000150.tar.json").unlink()
    with pytest.raises(InputError):
        export(str(out), dest, opts("mmseg"))
    report = export(str(out), dest, opts("mmseg", overwrite=True))
    assert report.splits[0].replaced == 1 and victim.read_bytes() == tree(clean)[f"images/validation/{keys[300]}.jpg"]
    assert mine.read_bytes() == b"keep me"  # --overwrite replaces only files the export writes


def test_remote_out_is_refused(tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="must be a local folder"):
        export(str(built("ade150", tmp_path_factory)), "s3://bucket/prefix", opts("mmseg"))
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_manifest_is_refused_before_anything_is_written(tmp_path_factory, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "datakit-export.json").write_text('{"mine": true}')
    with pytest.raises(InputError, match="not a datakit export manifest"):
        export(str(built("ade150", tmp_path_factory)), tmp_path / "x", opts("mmseg"))
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["datakit-export.json"]


def forged_split(root: Path, keys: list[str]) -> Path:
    """A split whose shard holds the given (crafted) keys, with a valid index and hash."""
    split = root / "train"
    split.mkdir(parents=True)
    item = make_items(1)[0]
    from datakit.shards.codecs import encode_mask

    with open(split / "train-000000.tar", "wb") as f:
        tar = TarStream(f)
        for key in keys:
            tar.add_many([(f"{key}.cls", b"1"), (f"{key}.jpg", item["image"]), (f"{key}.json", b"{}"),
                          (f"{key}.seg.png", encode_mask(item["mask"], 8))])
        tar.finish()
    data = (split / "train-000000.tar").read_bytes()
    spec = ListSource([]).spec("train")
    write_index(split, {"__kind__": "wids-shard-index-v1", "shardlist": [
        {"url": "train-000000.tar", "nsamples": len(keys), "filesize": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
        "datakit": {**spec.to_json(), "format_version": 1}})
    return split


@pytest.mark.parametrize("key", ["../../escaped", "a/../../../escaped", "/tmp/escaped", "dir\\escaped_b", "a//b", "./a"])
def test_crafted_keys_are_refused(key, tmp_path):
    split = forged_split(tmp_path / "ds", ["fine", key])
    try:
        assert list(raw_samples(split))[1] == key  # the key really reaches the exporter as crafted
    except CorruptShardError as refused:  # absolute and parent-relative member names stop at the shard reader
        assert "parent-relative" in str(refused)
    # the shard reader refuses absolute and parent-relative member names itself; export refuses every other trick
    with pytest.raises((InputError, CorruptShardError), match="refusing sample key|parent-relative") as err:
        export(str(split), tmp_path / "out" / "x", opts("mmseg"))
    assert "\n" not in str(err.value)
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped.jpg").exists()
    written = tree(tmp_path / "out" / "x" / "images")  # the sound sample, or nothing when the reader stopped first
    assert written in ({}, {"train/fine.jpg": make_items(1)[0]["image"]})


def test_cli_refuses_a_crafted_key_in_one_line(tmp_path):
    split = forged_split(tmp_path / "ds", ["../../../escaped"])
    proc = run("export", split, "--layout", "detectron2", "--out", tmp_path / "out", "-w", "1", "--no-progress")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert ("refusing sample key '../../../escaped'" in proc.stderr
            or "'../../../escaped.cls' has an absolute or parent-relative path" in proc.stderr)
    assert not list(tmp_path.rglob("escaped*"))


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    split = forged_split(tmp_path / "ds", ["a", "b"])
    dest = tmp_path / "x"
    (dest / "images").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", dest / "images" / "train")
    with pytest.raises(InputError, match="outside"):
        export(str(split), dest, opts("mmseg"))
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_workers_give_the_same_files(tmp_path_factory, tmp_path):
    out = built("coco2017", tmp_path_factory)
    export(str(out), tmp_path / "one", opts("detectron2"))
    export(str(out), tmp_path / "two", ExportOptions(layout="detectron2", workers=2, progress=False))
    assert tree(tmp_path / "one") == tree(tmp_path / "two") and len(tree(tmp_path / "one")) == 5 * 2 + 3 + 1


def test_cli_export_help_progress_and_summary(tmp_path_factory, tmp_path):
    helptext = run("export", "--help").stdout
    for needle in ("img_suffix", "seg_map_suffix", "reduce_zero_label", "load_sem_seg", "gt_ext", "ignore_label",
                   "_labelTrainIds.png", "prepare_ade20k_full_sem_seg.py", "ImageFolder", "--overwrite"):
        assert needle in helptext, needle
    env = {**os.environ, "DATAKIT_PROGRESS_INTERVAL": "0"}
    proc = run("export", built("ade150", tmp_path_factory), "-l", "mmseg", "-o", tmp_path / "x", "-w", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "export mmseg ade150/val: 3/3 (100%)" in proc.stderr
    assert "ade150/val" in proc.stdout and "3 samples, 6 files written" in proc.stdout
    again = run("export", built("ade150", tmp_path_factory), "-l", "mmseg", "-o", tmp_path / "x", "-w", "1", "--no-progress")
    assert again.returncode == 0 and "0 files written" in again.stdout and again.stderr == ""
