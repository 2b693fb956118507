"""Never lose or leak data: --overwrite deletes only what a build wrote, inputs and outputs never
overlap, paths from annotation content stay under their root, bombs are refused, full disks are one line."""

from __future__ import annotations

import errno
import io
import json
import shutil
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datakit.errors import CorruptShardError, InputError
from datakit.pipeline import BuildOptions, build
from datakit.shards.index import load_index, write_index
from datakit.shards.reader import iter_split
from datakit.sources import coco, imagefolder, voc
from helpers_foundation import ListSource, encode, make_items, photo

FIX = Path(__file__).parent / "fixtures"
OPTS = BuildOptions(shard_size=4, workers=1, progress=False, order="source")


def pics(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(photo(i, 32, 24)).save(folder / f"p{i}.jpg", quality=90)


def test_overwrite_refuses_a_file_datakit_did_not_write(tmp_path):
    build(ListSource(make_items(6)), tmp_path, None, OPTS)
    thesis = tmp_path / "train" / "thesis.tex"
    thesis.write_text("\\chapter{Results}")
    before = sorted(p.name for p in (tmp_path / "train").iterdir())
    with pytest.raises(InputError, match="thesis.tex, which datakit did not write"):
        build(ListSource(make_items(6)), tmp_path, None, replace(OPTS, overwrite=True))
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == before  # nothing was deleted
    thesis.unlink()
    rep = build(ListSource(make_items(6)), tmp_path, None, replace(OPTS, overwrite=True))
    assert rep.samples_written == 6


def test_overwrite_deletes_exactly_the_build_s_files(tmp_path):
    build(ListSource(make_items(9)), tmp_path, None, OPTS)
    (tmp_path / "train" / "train-000001.tar.tmp").write_bytes(b"torn")
    build(ListSource(make_items(3)), tmp_path, None, replace(OPTS, overwrite=True))
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [
        "README.md", "index.json", "train-000000.stats.json", "train-000000.tar"]


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_an_output_overlapping_the_input_is_refused_before_anything_is_touched(tmp_path, where):
    src = tmp_path / "data"
    pics(src / "train", 3)
    out = {"same": src, "inside": src / "shards", "around": tmp_path}[where]
    source = imagefolder.make_source({"src": str(src), "mode": "plain"})
    for opts in (OPTS, replace(OPTS, overwrite=True)):
        with pytest.raises(InputError, match="overlaps the input"):
            build(source, out, None, opts)
    assert sorted(p.name for p in (src / "train").iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_the_cli_refuses_imagenet_as_its_own_output(tmp_path):
    from imagenets_tree import make_tree

    tree = make_tree(tmp_path / "imagenet", 50)
    images = sorted((tmp_path / "imagenet" / "train").rglob("*.JPEG"))
    proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", "build", "imagenets", "--subset", "50", "--imagenet",
                           str(tree.root), "--out", str(tree.root), "--overwrite", "-w", "1"], capture_output=True, text=True)
    assert proc.returncode == 2 and "overlaps the input" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted((tmp_path / "imagenet" / "train").rglob("*.JPEG")) == images


def coco_root(tmp_path: Path, names: list[str]) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    obj = json.loads((FIX / "coco" / "instances_val2017_448263.json").read_text())
    base = obj["images"][0]
    obj["images"] = [{**base, "id": i + 1, "file_name": n} for i, n in enumerate(names)]
    obj["annotations"] = []
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(obj))
    return root


def test_coco_file_names_cannot_leave_the_image_folder(tmp_path):
    (tmp_path / "outside").mkdir()
    for name in ("x.jpg", "y.jpg"):
        Image.fromarray(photo(1, 320, 240)).save(tmp_path / "outside" / name)
    root = coco_root(tmp_path, ["../../outside/x.jpg", str(tmp_path / "outside" / "y.jpg")])
    rep = build(coco.make_source({"src": str(root), "splits": "val"}), tmp_path / "out", None, OPTS)
    assert rep.splits[0].samples == 0 and rep.splits[0].failures == {"outside_root": 2}


def test_voc_ids_and_class_folders_cannot_leave_their_root(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    shutil.copytree(FIX / "voc", root)
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    ids = [p.stem for p in (root / "JPEGImages").glob("*.jpg")]
    (sets / "val.txt").write_text("\n".join([ids[0], "../../../outside/x"]) + "\n")
    rep = build(voc.make_source({"src": str(root), "splits": "val"}), tmp_path / "out", None, OPTS)
    assert rep.splits[0].samples == 1 and rep.splits[0].failures == {"outside_root": 1}
    pics(tmp_path / "folders" / "n1", 2)
    classes = tmp_path / "classes.txt"
    classes.write_text("n1\n../escape\n")
    (tmp_path / "escape").mkdir()
    pics(tmp_path / "escape", 1)  # beside the class folders: a class list must not reach it
    src = imagefolder.make_source({"src": str(tmp_path / "folders"), "class_list": str(classes), "unlisted": "skip"})
    rep = build(src, tmp_path / "out2", None, OPTS)
    assert rep.splits[0].samples == 2 and rep.splits[0].failures == {}  # "../escape" is not a folder of src


def test_an_index_naming_a_shard_outside_its_folder_is_refused(tmp_path):
    build(ListSource(make_items(2)), tmp_path / "out", None, OPTS)
    split = tmp_path / "out" / "train"
    obj = json.loads((split / "index.json").read_text())
    obj["shardlist"][0]["url"] = "../../../etc/passwd.tar"
    obj.pop("digest")
    (split / "index.json").write_text(json.dumps(obj))
    with pytest.raises(InputError, match="not a .tar file name in the index's folder"):
        load_index(split)


def bomb_jpeg(width: int = 60000, height: int = 60000) -> bytes:
    """A small valid-looking baseline JPEG whose frame header claims ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG", quality=50)
    data = bytearray(buf.getvalue())
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def test_a_decompression_bomb_is_counted_not_stored(tmp_path):
    items = make_items(3)
    items[1]["image"] = bomb_jpeg()
    items[1]["mask"] = None
    assert len(items[1]["image"]) < 1000
    rep = build(ListSource(items), tmp_path, None, OPTS)
    assert rep.splits[0].samples == 2 and rep.splits[0].failures == {"image_too_large": 1}


def test_every_reader_reports_a_bomb_inside_a_shard(tmp_path):
    """A crafted shard holding a bomb: verify, show and stats report it in one line, never a traceback."""
    from datakit.shards.spec import ClassTable, SplitSpec
    from datakit.shards.tario import TarStream
    import hashlib

    split = tmp_path / "bad" / "train"
    split.mkdir(parents=True)
    with open(split / "train-000000.tar", "wb") as f:
        tar = TarStream(f)
        tar.add_many([("k.jpg", bomb_jpeg()), ("k.json", b"{}")])
        sha = tar.finish()
    size = (split / "train-000000.tar").stat().st_size
    spec = SplitSpec("bad", "train", ClassTable.from_names(["a"]))
    write_index(split, {"__kind__": "wids-shard-index-v1", "shardlist": [
        {"url": "train-000000.tar", "nsamples": 1, "filesize": size, "sha256": sha}], "datakit": spec.to_json()})
    assert hashlib.sha256((split / "train-000000.tar").read_bytes()).hexdigest() == sha
    for args in (["verify", str(split)], ["show", str(split), "--out", str(tmp_path / "g.png")]):
        proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", *args], capture_output=True, text=True)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "pixels" in proc.stderr or "does not decode" in proc.stderr, (args, proc.stderr)
    proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", "stats", str(split)], capture_output=True, text=True)
    assert proc.returncode == 0 and "60000x60000" in proc.stdout  # stats reads sizes from headers: it reports, never decodes
    with pytest.raises(CorruptShardError):
        list(iter_split(load_index(split)))


def test_a_full_disk_while_writing_the_index_is_one_line(tmp_path, monkeypatch):
    from datakit.io import atomic

    real = atomic.atomic_write_with

    def full(path, write, fsync=False):
        if Path(path).name == "index.json":
            raise InputError(f"cannot write {path}: {errno.errorcode[errno.ENOSPC]} No space left on device")
        return real(path, write, fsync)

    monkeypatch.setattr(atomic, "atomic_write_with", full)
    monkeypatch.setattr(atomic, "atomic_write_bytes",
                        lambda path, data, fsync=False: full(path, lambda fh: fh.write(data), fsync))
    import datakit.io.output as output

    monkeypatch.setattr(output, "atomic_write_bytes", atomic.atomic_write_bytes)
    with pytest.raises(InputError, match="No space left on device") as err:
        build(ListSource(make_items(3)), tmp_path, None, OPTS)
    assert "\n" not in str(err.value)
    monkeypatch.undo()
    rep = build(ListSource(make_items(3)), tmp_path, None, replace(OPTS, resume=True))
    assert rep.splits[0].skipped_shards == 1 and load_index(tmp_path / "train").total == 3


def test_atomic_writes_turn_enospc_into_one_line_and_leave_no_temp_file(tmp_path, monkeypatch):
    from datakit.io import atomic

    def fail(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(InputError, match="cannot write .*x.json: No space left on device"):
        atomic.atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_writer_failing_midway_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    from datakit.io import atomic

    (tmp_path / "sub.zip").write_bytes(b"the previous submission")

    def half_then_fail(fh):
        fh.write(b"PK half a zip")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write_with(tmp_path / "sub.zip", half_then_fail)
    assert [p.name for p in tmp_path.iterdir()] == ["sub.zip"]
    assert (tmp_path / "sub.zip").read_bytes() == b"the previous submission"


def test_exif_orientation_is_reset_in_the_stored_bytes_and_recorded(tmp_path):
    img = Image.fromarray(photo(3, 64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, exif=exif)
    items = make_items(1)
    items[0]["image"] = buf.getvalue()
    build(ListSource(items), tmp_path, None, OPTS)
    (sample,) = iter_split(load_index(tmp_path / "train"), decode=False)
    stored = Image.open(io.BytesIO(sample["jpg"]))
    assert stored.getexif().get(0x0112) == 1 and stored.size == (64, 48)  # pixels stay in the mask's frame
    assert json.loads(sample["json"])["exif_orientation"] == 6
    assert len(sample["jpg"]) == len(buf.getvalue())  # a 2-byte patch, not a re-encode


def test_fsync_persists_folders_after_renames(tmp_path, monkeypatch):
    from datakit.io import atomic

    synced = []
    real = atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_dir", lambda folder: (synced.append(str(folder)), real(folder)))
    build(ListSource(make_items(2)), tmp_path, None, replace(OPTS, fsync=True))
    assert str(tmp_path / "train") in synced


def test_encoded_jpeg_of_odd_input_still_round_trips():
    assert encode(photo(1), "PNG")[:4] == b"\x89PNG"
