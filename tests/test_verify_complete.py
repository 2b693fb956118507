"""verify catches every way a built split can differ from what the build wrote, with a non-zero exit
and no traceback: named corruptions one by one, then random bit flips anywhere in the split folder."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from datakit.jobs.parts import seal
from datakit.pipeline import BuildOptions, build
from datakit.shards.verify import verify
from helpers_foundation import ListSource, make_items

OPTS = BuildOptions(shard_size=4, workers=1, progress=False, order="source")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verify") / "good"
    build(ListSource(make_items(10, bits=16), bits=16, classes=[f"class{i}" for i in range(999)]), root, None, OPTS)
    assert verify(str(root))[0].ok
    return root


def copy_of(built: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst / "train"


def reseal(path: Path, change: Callable[[dict], None]) -> None:
    """Edit a sealed JSON file and seal it again (a forger who knows the digest rule)."""
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(seal(obj)))


def flip(path: Path, at: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 1 << bit
    path.write_bytes(bytes(data))


def retar(shard: Path, edit: Callable[[tarfile.TarInfo], None]) -> None:
    """Rewrite a shard with one member edited, then fix the index so only the edit is wrong."""
    members = []
    with tarfile.open(shard) as tar:
        for info in tar:
            members.append((info, tar.extractfile(info).read() if info.isfile() else b""))
    edit(members[0][0])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    shard.write_bytes(buf.getvalue())
    fix_index(shard)


def truncate_image(shard: Path) -> None:
    """Rewrite a shard with its first JPEG cut in half (a forger who then fixes the hashes)."""
    members = []
    with tarfile.open(shard) as tar:
        for info in tar:
            members.append((info, tar.extractfile(info).read()))
    at = next(i for i, (info, _) in enumerate(members) if info.name.endswith(".jpg"))
    info, data = members[at]
    info.size = len(data) // 2
    members[at] = (info, data[: len(data) // 2])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    shard.write_bytes(buf.getvalue())
    fix_index(shard)


def fix_index(shard: Path) -> None:
    data = shard.read_bytes()

    def change(obj: dict) -> None:
        for e in obj["shardlist"]:
            if e["url"] == shard.name:
                e["filesize"], e["sha256"] = len(data), hashlib.sha256(data).hexdigest()

    reseal(shard.parent / "index.json", change)
    marker = shard.with_name(shard.name[:-4] + ".stats.json")
    reseal(marker, lambda m: m.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), files={shard.name: len(data)}))


def _classes(obj: dict) -> list:
    return obj["datakit"]["class_table"]["classes"]


def edit_unsealed(path: Path, **changes) -> None:
    """Change fields of a sealed JSON file without resealing it (as a hand edit would)."""
    obj = json.loads(path.read_text())
    obj.update(changes)
    path.write_text(json.dumps(obj, indent=1))


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "a flipped byte in a shard": lambda s: flip(s / "train-000001.tar", 3000),
    "a truncated shard": lambda s: (s / "train-000001.tar").write_bytes((s / "train-000001.tar").read_bytes()[:5000]),
    "a missing shard": lambda s: (s / "train-000002.tar").unlink(),
    "an extra shard the index does not list": lambda s: shutil.copy(s / "train-000000.tar", s / "train-000007.tar"),
    "a flipped byte in a class name": lambda s: (s / "index.json").write_text(
        (s / "index.json").read_text().replace('"class5"', '"class4"')),
    "a changed ignore id": lambda s: (s / "index.json").write_text(
        (s / "index.json").read_text().replace('"ignore_index": 1000', '"ignore_index": 1001')),
    "an edited done marker": lambda s: edit_unsealed(s / "train-000000.stats.json", converted_images=1),
    "a missing done marker": lambda s: (s / "train-000000.stats.json").unlink(),
    "a resealed marker that disagrees with the index": lambda s: reseal(s / "train-000000.stats.json",
                                                                         lambda m: m.update(nsamples=3)),
    "an index url escaping the folder": lambda s: reseal(s / "index.json",
                                                         lambda o: o["shardlist"][0].update(url="../good/train/x.tar")),
    "a resealed index with a wrong sample count": lambda s: reseal(s / "index.json",
                                                                   lambda o: o["shardlist"][0].update(nsamples=5)),
    "a parent-relative member name": lambda s: retar(s / "train-000000.tar", lambda i: setattr(i, "name", "../../x.cls")),
    "a symlink member": lambda s: retar(s / "train-000000.tar", lambda i: (setattr(i, "type", tarfile.SYMTYPE),
                                                                            setattr(i, "linkname", "/etc/passwd"))),
    "a truncated image, hashes fixed": lambda s: truncate_image(s / "train-000001.tar"),
    "a changed dataset card": lambda s: (s / "README.md").write_text((s / "README.md").read_text() + "\nedited\n"),
    "a foreign file in the split": lambda s: (s / "notes.txt").write_text("hello"),
    "a class id outside the table, resealed": lambda s: reseal(s / "index.json", lambda o: _classes(o).pop(5)),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_named_corruption_is_caught(built, tmp_path, name):
    split = copy_of(built, tmp_path)
    CORRUPTIONS[name](split)
    reports = verify(str(split))
    assert reports and not all(r.ok for r in reports), name
    proc = subprocess.run([sys.executable, "-m", "datakit.cli.main", "verify", str(split)], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout, (name, proc.stderr)


def test_random_bit_flips_anywhere_in_the_split_are_caught(built, tmp_path):
    rng = random.Random(0)
    files = sorted(p.name for p in (built / "train").iterdir())
    for trial in range(40):
        split = tmp_path / f"t{trial}"
        shutil.copytree(built / "train", split)
        name = files[trial % len(files)]
        size = (split / name).stat().st_size
        flip(split / name, rng.randrange(size), rng.randrange(8))
        reports = verify(str(split))
        assert not all(r.ok for r in reports), f"bit flip in {name} went unnoticed"
        shutil.rmtree(split)


def test_old_indexes_without_digests_still_verify(built, tmp_path):
    split = copy_of(built, tmp_path)
    obj = json.loads((split / "index.json").read_text())
    obj.pop("digest")
    (split / "index.json").write_text(json.dumps(obj))
    for marker in split.glob("*.stats.json"):
        m = json.loads(marker.read_text())
        m.pop("digest")
        marker.write_text(json.dumps(m))
    (report,) = verify(str(split))
    assert report.ok and "no digest" in report.notes[0]


def test_masks_of_other_encodings_are_caught(built, tmp_path):
    """A 16-bit mask stored as a grey PNG where the index says rgb16 (what an old reader would clip)."""
    from datakit.shards.codecs import encode_mask
    from helpers_foundation import publish
    from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
    from datakit.shards.writer import ShardWriter

    spec = SplitSpec("t", "train", ClassTable.from_names(["a", "b"], 1000), masks=(MaskMember(bits=16, fill=1000),))
    (tmp_path / "train").mkdir()
    w = ShardWriter(tmp_path / "train", "train-000000", spec)
    w.write("k", make_items(1)[0]["image"], {"seg.png": np.ones((48, 64), np.uint16)})
    stats = w.close()
    shard = tmp_path / "train" / "train-000000.tar"
    with tarfile.open(shard) as tar:
        members = [(i, tar.extractfile(i).read()) for i in tar]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if info.name.endswith(".seg.png"):
                data = encode_mask(np.ones((48, 64), np.uint16), 16, "gray16")
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    shard.write_bytes(buf.getvalue())
    stats.bytes, stats.sha256 = len(buf.getvalue()), hashlib.sha256(buf.getvalue()).hexdigest()
    publish(tmp_path / "train", spec, [stats])
    (problem,) = verify(str(tmp_path))[0].problems
    assert "is not a rgb16 PNG" in problem.what


def test_a_missing_shard_is_reported_once(built, tmp_path):
    split = copy_of(built, tmp_path)
    (split / "train-000002.tar").unlink()
    (report,) = verify(str(split))
    about = [p for p in report.problems if "train-000002.tar" in str(p)]
    assert len(about) == 1 and "listed in the index but missing" in str(about[0])
