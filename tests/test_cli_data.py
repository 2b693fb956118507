"""The data commands end to end through the real `datakit` entry point: verify, stats, show, demo, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.shards.index import load_index
from datakit.shards.verify import verify
from helpers_foundation import ListSource, make_items

DATAKIT = [sys.executable, "-m", "datakit.cli.main"]


def run(*args, cwd=None, env=None):
    return subprocess.run([*DATAKIT, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture()
def built(tmp_path):
    build(ListSource(make_items(12)), tmp_path / "ds", None, BuildOptions(shard_size=5, workers=1, progress=False))
    return tmp_path / "ds"


def test_verify_passes_a_sound_build(built):
    proc = run("verify", built, "-w", "1")
    assert proc.returncode == 0, proc.stderr
    assert "3 shards, 12 samples" in proc.stdout


def test_verify_catches_a_flipped_byte(built):
    shard = built / "train" / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0x40
    shard.write_bytes(bytes(data))
    reports = verify(str(built))
    problems = [str(p) for r in reports for p in r.problems]
    assert problems and all("train-000001.tar" in p for p in problems)
    assert any("sha256" in p for p in problems)
    proc = run("verify", built, "-w", "1")
    assert proc.returncode == 3 and "train-000001.tar" in proc.stderr


def test_verify_names_the_shard_and_sample_of_a_truncated_tar(built):
    shard = built / "train" / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    proc = run("verify", built, "-w", "1")
    assert proc.returncode == 3
    assert "train-000000.tar" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_catches_a_mask_id_outside_the_class_table(tmp_path):
    from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
    from datakit.shards.writer import ShardWriter
    from helpers_foundation import publish

    spec = SplitSpec("t", "train", ClassTable.from_names(["a", "b"], 255), masks=(MaskMember(bits=8),))
    (tmp_path / "train").mkdir()
    w = ShardWriter(tmp_path / "train", "train-000000", spec)
    w.write("ok", make_items(1)[0]["image"], {"seg.png": np.zeros((48, 64), np.uint8)})
    stats = w.close()
    publish(tmp_path / "train", spec, [stats])
    assert verify(str(tmp_path))[0].ok
    # now forge a sample whose mask holds an id outside the class table
    w = ShardWriter(tmp_path / "train", "train-000000", spec)
    w.write("bad", make_items(1)[0]["image"], {"seg.png": np.full((48, 64), 7, np.uint8)})
    stats = w.close()
    publish(tmp_path / "train", spec, [stats])
    (problem,) = verify(str(tmp_path))[0].problems
    assert problem.key == "bad" and "not in the class table" in problem.what


def test_verify_catches_a_mask_of_the_wrong_size(tmp_path):
    """A shard forged by hand (the writer itself refuses such a sample)."""
    import hashlib
    from datakit.shards.codecs import encode_mask
    from datakit.shards.tario import TarStream

    split = tmp_path / "train"
    split.mkdir()
    image = make_items(1)[0]["image"]
    with open(split / "train-000000.tar", "wb") as f:
        tar = TarStream(f)
        small_mask = encode_mask(np.zeros((10, 10), np.uint8), 8)
        tar.add_many([("k.cls", b"1"), ("k.jpg", image), ("k.json", b"{}"), ("k.seg.png", small_mask)])
        tar.finish()
    data = (split / "train-000000.tar").read_bytes()
    spec = ListSource([]).spec("train")
    (split / "index.json").write_text(json.dumps({"__kind__": "wids-shard-index-v1", "shardlist": [  # an old, unsealed index
        {"url": "train-000000.tar", "nsamples": 1, "filesize": len(data), "sha256": hashlib.sha256(data).hexdigest()}],
        "datakit": {**spec.to_json(), "format_version": 1}}))
    (problem,) = verify(str(tmp_path))[0].problems
    assert problem.key == "k" and "10x10" in problem.what and "64x48" in problem.what


def test_stats_json_counts_pixels_exactly(built):
    proc = run("stats", built, "--json", "-w", "1")
    assert proc.returncode == 0, proc.stderr
    (st,) = json.loads(proc.stdout)
    assert st["samples"] == 12 and st["shards"] == 3
    expected = np.bincount(np.concatenate([it["mask"].ravel() for it in make_items(12)]))
    got = {c["id"]: c["pixels"] for c in st["class_pixels"]}
    assert got == {i: int(n) for i, n in enumerate(expected) if n}
    assert st["common_sizes"] == [{"size": "64x48", "count": 12}]


def test_show_draws_a_grid(built, tmp_path):
    out = tmp_path / "grid.png"
    proc = run("show", built, "--out", out, "--count", "6", "--cols", "3", "--thumb", "64")
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        assert img.mode == "RGB" and img.width >= 3 * 64 and img.height >= 2 * 48


@pytest.mark.parametrize("args,needle", [
    (["verify", "/nonexistent/place"], "no such file or folder"),
    (["stats", "/nonexistent/place"], "no such file or folder"),
    (["build", "nosuchrecipe", "--out", "/tmp/x"], "unknown recipe"),
    (["build", "demo", "--out", "{tmp}/o", "-p", "bogus=1"], "unknown parameter"),
    (["convert", "imagefolder", "--src", "/nonexistent/src", "--out", "{tmp}/o"], "not found"),
])
def test_bad_input_is_one_line_and_non_zero(args, needle, tmp_path):
    proc = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode != 0
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_demo_builds_verifies_and_draws(tmp_path):
    proc = run("demo", "--out", tmp_path / "demo", "--synthetic", "40", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for split, n in [("synthetic", 40), ("ade150", 3), ("voc", 2)]:
        assert load_index(tmp_path / "demo" / split).total == n
        assert (tmp_path / "demo" / f"{split}.png").exists()
    assert "verified demo/voc" in proc.stdout
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    for hint in (f"datakit stats {tmp_path / 'demo'}", f"datakit show {tmp_path / 'demo'}/voc --out voc.png"):
        assert hint in lines  # each suggested command whole on its own line, ready to paste
    voc = load_index(tmp_path / "demo" / "voc")
    from datakit.shards.reader import iter_split

    masks = {s["__key__"]: s["seg.png"] for s in iter_split(voc)}
    raw = np.asarray(Image.open("tests/fixtures/voc/SegmentationClass/2007_000032.png"))
    assert np.array_equal(masks["2007_000032"], raw)  # palette indices kept as class ids


BLOCK_TORCH = """
import sys, runpy
class Block:
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
sys.argv = ["datakit"] + sys.argv[1:]
from datakit.cli.main import main
try:
    main()
finally:
    assert "torch" not in sys.modules
"""


def test_data_commands_run_without_torch(tmp_path):
    script = tmp_path / "notorch.py"
    script.write_text(BLOCK_TORCH)
    out = tmp_path / "d"
    for args in (["build", "demo", "--out", out, "-p", "synthetic=8", "-w", "1", "--no-progress"],
                 ["verify", out, "-w", "1"], ["stats", out, "-w", "1"], ["show", out, "--out", tmp_path / "g.png"]):
        proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, (args, proc.stderr)
