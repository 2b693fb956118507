"""Builds: determinism, resume after a kill, atomicity, bad samples, keys, member sets, index."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from datakit.pipeline import BuildOptions, build
from datakit.errors import BuildError, InputError
from datakit.shards.codecs import decode_mask
from datakit.shards.index import load_index
from datakit.shards.reader import iter_split
from datakit.shards.writer import sanitize_key
from helpers_foundation import ListSource, encode, make_items, photo

OPTS = BuildOptions(shard_size=7, workers=1, progress=False, order="source")


def opts(**kw) -> BuildOptions:
    """OPTS with some fields changed."""
    from dataclasses import replace

    return replace(OPTS, **kw)


def files(root: Path, pattern: str = "*") -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern)) if p.is_file()}


def test_build_round_trips_image_and_mask_bytes(tmp_path):
    items = make_items(20)
    report = build(ListSource(items), tmp_path, None, OPTS)
    assert report.splits[0].samples == 20 and report.splits[0].shards == 3
    got = {s["__key__"]: s for s in iter_split(load_index(tmp_path / "train"), decode=False)}
    assert list(got) == [it["key"] for it in items]
    for it in items:
        s = got[it["key"]]
        assert s["jpg"] == it["image"]  # RGB JPEGs are stored as their original bytes
        assert np.array_equal(decode_mask(s["seg.png"]), it["mask"])
        assert sorted(k for k in s if k != "__key__") == ["cls", "jpg", "json", "seg.png"]


def test_16_bit_masks_and_index_schema(tmp_path):
    items = make_items(5, bits=16)
    build(ListSource(items, bits=16), tmp_path, None, OPTS)
    index = json.loads((tmp_path / "train" / "index.json").read_text())
    assert index["__kind__"] == "wids-shard-index-v1"
    entry = index["shardlist"][0]
    shard = tmp_path / "train" / entry["url"]
    assert entry["nsamples"] == 5 and entry["filesize"] == shard.stat().st_size and len(entry["sha256"]) == 64
    dk = index["datakit"]
    assert dk["class_table"]["ignore_index"] == 1000 and dk["masks"][0]["bits"] == 16
    assert dk["members"] == ["cls", "jpg", "json", "seg.png"]
    sample = next(iter_split(load_index(tmp_path / "train")))
    assert sample["seg.png"].dtype == np.uint16 and sample["seg.png"].max() > 255


def test_builds_are_byte_identical_across_runs_and_worker_counts(tmp_path):
    items = make_items(30)
    build(ListSource(items), tmp_path / "a", None, OPTS)
    build(ListSource(items), tmp_path / "b", None, opts(workers=2))
    a, b = files(tmp_path / "a", "*.tar"), files(tmp_path / "b", "*.tar")
    assert a == b and len(a) == 5
    assert files(tmp_path / "a", "index.json") == files(tmp_path / "b", "index.json")


KILL_SCRIPT = """
import sys
sys.path.insert(0, "tests")
from helpers_foundation import ListSource, make_items
from datakit.pipeline import BuildOptions, build
if __name__ == "__main__":
    build(ListSource(make_items(30), crash_at=int(sys.argv[2])), sys.argv[1], None,
          BuildOptions(shard_size=7, workers=1, progress=False, resume=True, order="source"))
"""


def test_killed_build_resumes_to_identical_output(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(script), str(out), "17"], cwd=os.getcwd())
    assert proc.returncode != 0  # SIGKILLed while writing the third shard
    split = out / "train"
    assert (split / "train-000001.stats.json").exists()
    assert (split / "train-000002.tar.tmp").exists()  # torn shard left behind...
    assert not (split / "train-000002.tar").exists()  # ...but never under its final name
    assert not (split / "index.json").exists()
    report = build(ListSource(make_items(30)), out, None, opts(resume=True))
    assert report.splits[0].skipped_shards == 2 and report.samples_written == 16
    build(ListSource(make_items(30)), tmp_path / "clean", None, OPTS)
    assert files(out, "*.tar") == files(tmp_path / "clean", "*.tar")
    assert files(out, "index.json") == files(tmp_path / "clean", "index.json")
    assert not list(split.glob("*.tmp"))


def test_existing_output_needs_resume_or_overwrite(tmp_path):
    build(ListSource(make_items(3)), tmp_path, None, OPTS)
    with pytest.raises(InputError, match="--resume"):
        build(ListSource(make_items(3)), tmp_path, None, OPTS)
    rep = build(ListSource(make_items(3)), tmp_path, None, opts(overwrite=True))
    assert rep.samples_written == 3


def test_torn_stats_file_means_the_shard_is_redone(tmp_path):
    build(ListSource(make_items(10)), tmp_path, None, OPTS)
    (tmp_path / "train" / "train-000000.tar").write_bytes(b"half")  # size no longer matches its stats
    rep = build(ListSource(make_items(10)), tmp_path, None, opts(resume=True))
    assert rep.splits[0].skipped_shards == 1 and rep.samples_written == 7


def test_bad_samples_are_recorded_not_dropped(tmp_path):
    items = make_items(6)
    items[1]["image"] = b"garbage"
    items[2]["error"] = "unreadable_file"
    items[3]["mask"] = np.zeros((5, 5), np.uint8)
    rep = build(ListSource(items), tmp_path, None, OPTS)
    assert rep.splits[0].samples == 3
    assert rep.splits[0].failures == {"mask_size_mismatch": 1, "unreadable_file": 1, "unreadable_image": 1}
    index = json.loads((tmp_path / "train" / "index.json").read_text())
    listed = {f["key"]: f["reason"] for f in index["datakit"]["failed_samples"]}
    assert listed == {"img_0001": "unreadable_image", "img_0002": "unreadable_file", "img_0003": "mask_size_mismatch"}


def test_strict_stops_at_the_first_bad_sample(tmp_path):
    items = make_items(4)
    items[2]["image"] = b"garbage"
    with pytest.raises(BuildError):
        build(ListSource(items), tmp_path, None, opts(strict=True))
    assert not list((tmp_path / "train").glob("*.tar*"))


def test_missing_mask_is_filled_with_ignore(tmp_path):
    items = make_items(3)
    items[1]["mask"] = None
    build(ListSource(items), tmp_path, None, OPTS)
    samples = list(iter_split(load_index(tmp_path / "train")))
    assert all("seg.png" in s for s in samples)
    assert (samples[1]["seg.png"] == 255).all() and samples[1]["seg.png"].shape == (48, 64)


def test_odd_images_are_converted_to_rgb_jpeg(tmp_path):
    items = make_items(3)
    items[0]["image"] = encode(photo(9), "JPEG", "CMYK")
    items[1]["image"] = encode(photo(9), "PNG")
    items[2]["image"] = encode(photo(9), "JPEG", "L")
    build(ListSource(items), tmp_path, None, OPTS)
    index = load_index(tmp_path / "train")
    assert index.extra["converted_images"] == 3
    with tarfile.open(tmp_path / "train" / "train-000000.tar") as tar:
        names = tar.getnames()
    assert all(not n.endswith(".JPEG") for n in names)
    for s in iter_split(index, decode=False):
        assert s["jpg"][:2] == b"\xff\xd8"
    for s in iter_split(index):
        assert s["jpg"].shape == (48, 64, 3)


def test_keys_are_sanitized_and_collisions_are_duplicate_key_failures(tmp_path):
    assert sanitize_key("n01440764/n01440764_10026.JPEG") == "n01440764_n01440764_10026_JPEG"
    assert sanitize_key("a b.c") == "a_b_c"
    assert sanitize_key("Straße/café.jpg") == "Straße_café_jpg"  # letters of any script are kept
    items = make_items(3)
    items[0]["key"], items[1]["key"], items[2]["key"] = "dir/x.y", "dir/x_z", "日本/猫.1"
    build(ListSource(items), tmp_path, None, OPTS)
    keys = [s["__key__"] for s in iter_split(load_index(tmp_path / "train"), decode=False)]
    assert keys == ["dir_x_y", "dir_x_z", "日本_猫_1"] and all("." not in k for k in keys)
    items[1]["key"] = "dir/x_y"  # becomes dir_x_y too: the second one is a failure, the build goes on
    rep = build(ListSource(items), tmp_path / "again", None, OPTS)
    assert rep.splits[0].samples == 2 and rep.splits[0].failures == {"duplicate_key": 1}
    index = json.loads((tmp_path / "again" / "train" / "index.json").read_text())
    assert [f["key"] for f in index["datakit"]["failed_samples"]] == ["dir_x_y"]


def test_a_write_failing_half_way_leaves_no_complete_looking_shard(tmp_path, monkeypatch):
    from datakit.shards import tario

    calls = {"n": 0}
    real_add = tario.TarStream.add_many

    def flaky_add(self, members):
        calls["n"] += 1
        if calls["n"] == 10:  # the third sample of the second shard
            raise OSError(28, "No space left on device")
        real_add(self, members)

    monkeypatch.setattr(tario.TarStream, "add_many", flaky_add)
    with pytest.raises(BuildError, match="No space left"):
        build(ListSource(make_items(14)), tmp_path, None, OPTS)
    split = tmp_path / "train"
    assert sorted(p.name for p in split.iterdir()) == ["train-000000.stats.json", "train-000000.tar"]
    monkeypatch.undo()
    rep = build(ListSource(make_items(14)), tmp_path, None, opts(resume=True))
    assert rep.samples_written == 7 and load_index(split).total == 14


def test_size_limit_splits_shards_by_estimated_bytes(tmp_path):
    items = make_items(10)
    limit = sum(len(it["image"]) for it in items[:3]) + 1
    build(ListSource(items), tmp_path, None, opts(shard_size=100, shard_bytes=limit))
    counts = [s.nsamples for s in load_index(tmp_path / "train").shards]
    sizes = [len(it["image"]) for it in items]
    assert sum(counts) == 10 and len(counts) > 1
    start = 0
    for n in counts:  # greedy: each shard fits the limit, and the next image would not have fitted
        assert sum(sizes[start:start + n]) <= limit
        if start + n < len(sizes):
            assert sum(sizes[start:start + n + 1]) > limit
        start += n


def test_resume_redoes_shards_built_from_other_inputs_or_settings(tmp_path):
    build(ListSource(make_items(20)), tmp_path, None, OPTS)
    (tmp_path / "train" / "train-000002.stats.json").unlink()
    rep = build(ListSource(make_items(20)), tmp_path, None, opts(shard_size=5, resume=True))  # records move
    assert rep.splits[0].skipped_shards == 0 and rep.samples_written == 20 and len(rep.splits[0].redone) == 2
    assert all("record" in why for why in rep.splits[0].redone)
    build(ListSource(make_items(20)), tmp_path / "clean5", None, opts(shard_size=5))
    assert files(tmp_path / "train") == files(tmp_path / "clean5" / "train", "*.tar")  | {
        k: v for k, v in files(tmp_path / "train").items() if not k.endswith(".tar")}  # the stale 3rd shard is gone
    assert sorted(p.name for p in (tmp_path / "train").glob("*.tar")) == [f"train-00000{i}.tar" for i in range(4)]
    renamed = ListSource(make_items(20), classes=["bg", "x", "y", "z"])  # another class table
    rep = build(renamed, tmp_path, None, opts(shard_size=5, resume=True))
    assert rep.samples_written == 20 and all("class table, members or writer settings" in why for why in rep.splits[0].redone)
    rep = build(renamed, tmp_path, None, opts(shard_size=5, resume=True))
    assert rep.splits[0].skipped_shards == 4 and rep.samples_written == 0 and not rep.splits[0].redone


def test_a_dead_worker_process_fails_its_tasks_cleanly(tmp_path):
    """A pool worker killed mid-shard: a BuildError (not a traceback), no torn shard under a final name."""
    src = ListSource(make_items(21), crash_at=9)
    with pytest.raises(BuildError, match="worker process died"):
        build(src, tmp_path, None, opts(workers=2))
    split = tmp_path / "train"
    for tar in split.glob("*.tar"):  # a shard under its final name is always whole (written as .tmp, then renamed)
        with tarfile.open(tar) as t:
            assert len(t.getnames()) == 4 * 7
    rep = build(ListSource(make_items(21)), tmp_path, None, opts(workers=2, resume=True))
    assert load_index(split).total == 21 and rep.samples_written + 7 * rep.splits[0].skipped_shards == 21
