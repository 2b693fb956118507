"""--resume redoes exactly the shards whose inputs or settings changed, says why, and keeps the rest.

Each test here reproduces a defect of the earlier design: an unrelated input change refused the
whole build; a same-size replaced image or an edited mask was resumed as finished; a moved or
copied input tree refused every shard.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.shards.index import load_index
from datakit.shards.reader import iter_split
from datakit.shards.verify import verify
from datakit.sources import ade, imagefolder

FIX = Path(__file__).parent / "fixtures"
OPTS = BuildOptions(shard_size=2, workers=1, progress=False, order="source")


def photos(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.jpg", quality=90)


def tars(split: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(split.glob("*.tar"))}


def plain(src: Path):
    return imagefolder.make_source({"src": str(src), "mode": "plain", "dataset": "pics"})


def test_appending_an_image_redoes_only_the_last_shard(tmp_path):
    photos(tmp_path / "src", 5)
    build(plain(tmp_path / "src"), tmp_path / "out", None, OPTS)  # shards of 2, 2, 1
    photos(tmp_path / "src", 1, start=5)
    rep = build(plain(tmp_path / "src"), tmp_path / "out", None, replace(OPTS, resume=True))
    assert rep.splits[0].skipped_shards == 2 and rep.samples_written == 2
    assert rep.splits[0].redone == ["train-000002: record 'img005' is new"]
    build(plain(tmp_path / "src"), tmp_path / "clean", None, OPTS)
    assert tars(tmp_path / "out" / "train") == tars(tmp_path / "clean" / "train")
    assert load_index(tmp_path / "out" / "train").listing["found_samples"] == 6


def test_with_the_default_permuted_order_a_resume_still_equals_a_fresh_build(tmp_path):
    opts = replace(OPTS, order="permuted", seed=3)
    photos(tmp_path / "src", 9)
    build(plain(tmp_path / "src"), tmp_path / "out", None, opts)
    photos(tmp_path / "src", 1, start=9)
    rep = build(plain(tmp_path / "src"), tmp_path / "out", None, replace(opts, resume=True))
    build(plain(tmp_path / "src"), tmp_path / "clean", None, opts)
    assert tars(tmp_path / "out" / "train") == tars(tmp_path / "clean" / "train")
    assert rep.splits[0].skipped_shards + len(rep.splits[0].redone) + 1 >= 5  # no refusal, and unchanged shards kept
    assert load_index(tmp_path / "out" / "train").extra["record_order"] == {"kind": "permuted", "seed": 3, "window": 262144}


def test_a_same_size_replacement_redoes_its_shard_and_names_the_file(tmp_path):
    photos(tmp_path / "src", 6)
    build(plain(tmp_path / "src"), tmp_path / "out", None, OPTS)
    target = tmp_path / "src" / "img003.jpg"
    size = target.stat().st_size
    data = bytearray((tmp_path / "src" / "img004.jpg").read_bytes()[:size].ljust(size, b"\0"))
    photos(tmp_path / "other", 1, start=50)  # a different image of the same byte size
    other = (tmp_path / "other" / "img050.jpg").read_bytes()
    data[: min(size, len(other))] = other[: min(size, len(other))]
    target.write_bytes(bytes(data))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    assert target.stat().st_size == size
    rep = build(plain(tmp_path / "src"), tmp_path / "out", None, replace(OPTS, resume=True))
    (why,) = rep.splits[0].redone
    assert why.startswith("train-000001: record 'img003': img003.jpg changed (size")
    assert rep.splits[0].skipped_shards == 2 and rep.samples_written == 2
    stored = {s["__key__"]: s["jpg"] for s in iter_split(load_index(tmp_path / "out" / "train"), decode=False)}
    assert stored["img003"] == target.read_bytes()


def test_an_edited_mask_is_redone_with_its_new_pixels(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    shutil.copytree(FIX / "ade20k", root, ignore=shutil.ignore_patterns("convertFromADE"))
    src = ade.make_source({"src": str(root), "splits": "val"})
    opts = replace(OPTS, shard_size=1)
    build(src, tmp_path / "out", None, opts)
    label = root / "annotations" / "validation" / "ADE_val_00000002.png"
    raw = np.array(Image.open(label))
    raw[:4, :4] = 7
    Image.fromarray(raw).save(label)
    rep = build(ade.make_source({"src": str(root), "splits": "val"}), tmp_path / "out", None, replace(opts, resume=True))
    (why,) = rep.splits[0].redone
    assert "ADE_val_00000002" in why and "annotations/validation/ADE_val_00000002.png" in why
    got = {s["__key__"]: s["seg.png"] for s in iter_split(load_index(tmp_path / "out" / "val"))}
    assert (got["ADE_val_00000002"][:4, :4] == 6).all()  # stored reduced: 7 - 1
    assert verify(str(tmp_path / "out"))[0].ok


def test_a_moved_tree_keeps_every_shard_and_a_copied_one_keeps_them_with_content(tmp_path):
    photos(tmp_path / "src", 6)
    build(plain(tmp_path / "src"), tmp_path / "out", None, OPTS)
    shutil.move(str(tmp_path / "src"), str(tmp_path / "scratch"))  # like ImageNet moved to node-local disk
    rep = build(plain(tmp_path / "scratch"), tmp_path / "out", None, replace(OPTS, resume=True))
    assert rep.splits[0].skipped_shards == 3 and rep.samples_written == 0
    shutil.copytree(tmp_path / "scratch", tmp_path / "copy", copy_function=shutil.copyfile)  # new mtimes
    rep = build(plain(tmp_path / "copy"), tmp_path / "out", None, replace(OPTS, resume="content"))
    assert rep.splits[0].skipped_shards == 3 and rep.samples_written == 0
    rep = build(plain(tmp_path / "copy"), tmp_path / "out", None, replace(OPTS, resume="stat"))
    assert rep.samples_written == 6 and all("mtime differs" in why for why in rep.splits[0].redone)


def test_a_torn_or_edited_done_marker_is_not_trusted(tmp_path):
    photos(tmp_path / "src", 4)
    build(plain(tmp_path / "src"), tmp_path / "out", None, OPTS)
    marker = tmp_path / "out" / "train" / "train-000000.stats.json"
    obj = json.loads(marker.read_text())
    assert obj["nsamples"] == 2
    marker.write_text(json.dumps({**obj, "nsamples": 3}))  # edited by hand: the digest no longer matches
    rep = build(plain(tmp_path / "src"), tmp_path / "out", None, replace(OPTS, resume=True))
    assert rep.splits[0].skipped_shards == 1 and rep.samples_written == 2
    assert load_index(tmp_path / "out" / "train").shards[0].nsamples == 2  # the index never takes a forged count


def test_marker_content_hashes_equal_a_fresh_read_of_each_input(tmp_path):
    from datakit.pipeline.fingerprint import content_hash

    photos(tmp_path / "src", 4)
    build(plain(tmp_path / "src"), tmp_path / "out", None, OPTS)
    seen = 0
    for marker in (tmp_path / "out" / "train").glob("*.stats.json"):
        for record in json.loads(marker.read_text())["records"]:
            for rel, _size, _stat, content in record[3]:
                assert content == content_hash(str(tmp_path / "src" / rel))  # taken from the loaded bytes
                seen += 1
    assert seen == 4
