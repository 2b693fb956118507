"""First-contact behaviour of the real `datakit` entry point: the small things a new user meets first."""

import subprocess
import sys
from pathlib import Path

import pytest

import datakit
from datakit.shards.index import load_index
from datakit.sources import voc

DATAKIT = [sys.executable, "-m", "datakit.cli.main"]
ADE = Path(__file__).parent / "fixtures" / "ade20k"  # the real ADE20K sample: validation images only


def run(*args, cwd=None):
    return subprocess.run([*DATAKIT, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_version_prints_the_package_version():
    proc = run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"datakit {datakit.__version__}"


def test_a_misspelt_recipe_gets_one_line_with_the_close_name(tmp_path):
    proc = run("build", "imagenet", "--out", tmp_path / "o")
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "did you mean 'imagenets'" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_convert_help_shows_only_converter_options():
    convert = run("convert", "--help").stdout
    build = run("build", "--help").stdout
    for option in ("--subset", "--imagenet", "--annotations", "--allow-missing"):
        assert option in build and option not in convert
    assert "--src" in convert and "--split" in convert


def test_an_output_under_a_file_is_one_line_and_the_file_is_untouched(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    proc = run("build", "demo", "--out", blocker / "out", "-p", "synthetic=4", "-w", "1", "--no-progress")
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert str(blocker) in proc.stderr
    assert blocker.read_text() == "keep me"


def test_a_converter_builds_the_splits_present_and_warns_once_about_the_rest(tmp_path):
    proc = run("convert", "ade150", "--src", ADE, "--out", tmp_path / "o", "-w", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("datakit: warning:")]
    assert len(warnings) == 1 and "no train split" in warnings[0] and "converting val" in warnings[0]
    assert load_index(tmp_path / "o" / "val").total == 3
    assert not (tmp_path / "o" / "train").exists()


@pytest.mark.parametrize("asked", ["val", "validation"])
def test_val_and_validation_name_the_same_split(tmp_path, asked):
    proc = run("convert", "ade150", "--src", ADE, "--out", tmp_path / "o", "--split", asked, "-w", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert load_index(tmp_path / "o" / "val").total == 3
    assert "warning" not in proc.stderr  # asking for one split is not a shortfall


def test_ade_folder_names_training_and_validation_are_split_names_too():
    from datakit.sources import ade

    src = ade.make_source({"src": str(ADE), "splits": "training,validation"})
    assert src.params.splits == ("train", "val")


def test_an_unknown_split_names_the_available_ones(tmp_path):
    proc = run("convert", "ade150", "--src", ADE, "--out", tmp_path / "o", "--split", "test", "-w", "1")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "'test'" in proc.stderr and "val" in proc.stderr


def test_a_relative_saliency_folder_is_found_from_the_current_directory(tmp_path, monkeypatch):
    root = tmp_path / "VOC2012"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    work = tmp_path / "work"
    (work / "sal").mkdir(parents=True)
    monkeypatch.chdir(work)
    src = voc.make_source({"src": str(root), "saliency": "./sal"})
    assert Path(src.params.saliency) == work / "sal"
    monkeypatch.chdir(tmp_path)  # neither here nor under the root: one clear error
    with pytest.raises(datakit.errors.InputError, match=r"saliency folder not found: \./sal \(looked in the current"):
        voc.make_source({"src": str(root), "saliency": "./sal"})


def test_resume_equals_content_is_accepted(tmp_path):
    out = tmp_path / "o"
    first = run("convert", "ade150", "--src", ADE, "--out", out, "-w", "1", "--no-progress")
    assert first.returncode == 0, first.stderr
    again = run("convert", "ade150", "--src", ADE, "--out", out, "-w", "1", "--no-progress", "--resume=content")
    assert again.returncode == 0, again.stderr
    assert load_index(out / "val").total == 3


@pytest.mark.parametrize("command", [
    ["convert", "ade150", "--src", ADE, "--split", "val", "-w", "1", "--no-progress"],
    ["demo", "-w", "1"],
])
def test_a_file_as_the_output_folder_is_refused_before_anything_runs(tmp_path, command):
    blocker = tmp_path / "readers.py"
    blocker.write_text("keep me")
    proc = run(*command, "--out", blocker)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"datakit: error: --out {blocker} is a file; give a folder"]
    assert "0 samples" not in proc.stdout and blocker.read_text() == "keep me"


@pytest.fixture(scope="module")
def ade150_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("papercuts") / "a150"
    proc = run("convert", "ade150", "--src", ADE, "--out", out, "-w", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return out


def test_export_into_an_existing_file_is_one_line(ade150_shards, tmp_path):
    blocker = tmp_path / "readers.py"
    blocker.write_text("keep me")
    proc = run("export", ade150_shards, "--layout", "mmseg", "--out", blocker, "--no-progress")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"datakit: error: --out {blocker} is a file; give a folder"]
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("command", [
    ["export", "--layout", "mmseg", "--no-progress", "--out", "{split}/exp"],
    ["show", "--no-progress", "--out", "{split}/grid.png"],
])
def test_export_and_show_never_write_into_a_split_folder(ade150_shards, command):
    split = ade150_shards / "val"
    before = sorted(p.name for p in split.iterdir())
    proc = run(command[0], ade150_shards, *(a.format(split=split) for a in command[1:]))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "inside" in proc.stderr and str(split) in proc.stderr
    assert sorted(p.name for p in split.iterdir()) == before
    assert run("verify", ade150_shards).returncode == 0


def test_show_names_the_split_it_drew(ade150_shards, tmp_path):
    proc = run("show", ade150_shards, "--out", tmp_path / "g.png", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "samples of ade150/val" in proc.stdout


@pytest.mark.parametrize("command", ["verify", "stats", "show"])
def test_a_file_that_is_no_index_is_a_wrong_argument_not_a_damaged_split(tmp_path, command):
    notes = tmp_path / "readers.py"
    notes.write_text("import datasets\n")
    proc = run(command, notes, *(["--out", tmp_path / "g.png"] if command == "show" else []))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [f"datakit: error: {notes} is not a datakit index: give a split folder, "
                                                "its index.json or a dataset root"]


def test_a_missing_or_file_src_is_said_plainly(tmp_path):
    missing = run("convert", "ade150", "--src", tmp_path / "nope", "--out", tmp_path / "o")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [f"datakit: error: ade: --src {tmp_path / 'nope'}: folder not found"]
    notes = tmp_path / "instances.json"
    notes.write_text("{}")
    a_file = run("convert", "coco2017", "--src", notes, "--out", tmp_path / "o")
    assert a_file.returncode == 2 and "is a file; give the dataset's root folder" in a_file.stderr
    imagenet = run("build", "imagenets", "--subset", "50", "--imagenet", notes, "--out", tmp_path / "o")
    assert imagenet.returncode == 2 and "is a file; give the ImageNet-1k folder" in imagenet.stderr
    assert not (tmp_path / "o").exists()


def test_ade847_full_release_without_validation_warns_and_writes_no_empty_split(tmp_path):
    full = Path(__file__).parent / "fixtures" / "ade20k_full"  # the full-release sample: training images only
    proc = run("convert", "ade847", "--src", full, "--out", tmp_path / "o", "-w", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("datakit: warning:")]
    assert len(warnings) == 1 and "no val split (no validation under" in warnings[0]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["train"]
