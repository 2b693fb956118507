"""`--format folder`: the official ImageNetS{N}/ layout with symlinks, hardlinks or copies."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from datakit.pipeline import BuildOptions
from datakit.errors import InputError
from datakit.imagenets.lists import load_lists
from datakit.imagenets.source import export, report
from imagenets_tree import Tree, add_unlisted_train, make_tree, write_annotations

OPTS = BuildOptions(workers=1, progress=False)
LISTS = load_lists(50)
IMAGE_DIRS = ("train", "train-semi", "validation", "test")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    return make_tree(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def ann_zip(tmp_path_factory) -> Path:
    return write_annotations(tmp_path_factory.mktemp("ann"), 50, as_zip=True)


def files_under(folder: Path) -> dict[str, Path]:
    """Relative path -> path of every file, following directory symlinks."""
    out = {}
    for dirpath, _dirs, names in os.walk(folder, followlinks=True):
        for n in names:
            p = Path(dirpath) / n
            out[str(p.relative_to(folder))] = p
    return out


def source_files(tree: Tree) -> dict[str, int]:
    return {str(p.relative_to(tree.root)): p.stat().st_ino for p in tree.root.rglob("*") if p.is_file()}


def expected_layout(tree: Tree) -> dict[str, set[str]]:
    train = {f"{w}/{p.name}" for w in LISTS.wnids for p in (tree.root / "train" / w).iterdir()}
    return {
        "train": train,
        "train-semi": {f"{e.wnid}/{e.name}" for e in LISTS.semi},
        "train-semi-segmentation": {f"{e.wnid}/{e.mask_name}" for e in LISTS.semi},
        "validation": {f"{e.wnid}/{e.name}" for e in LISTS.validation},
        "validation-segmentation": {f"{e.wnid}/{e.mask_name}" for e in LISTS.validation},
        "test": {f"{e.wnid}/{e.name}" for e in LISTS.test},
    }


def test_symlink_layout_from_a_relative_imagenet_path(tree, ann_zip, tmp_path, monkeypatch):
    monkeypatch.chdir(tree.root.parent)
    before = source_files(tree)
    params = {"subset": 50, "imagenet": tree.root.name, "annotations": str(ann_zip), "format": "folder"}
    rep = export(params, "out", OPTS)
    root = tree.root.parent / "out" / "ImageNetS50"
    assert sorted(os.listdir(root)) == sorted(expected_layout(tree))
    for name, names in expected_layout(tree).items():
        assert set(files_under(root / name)) == names, name
    for wnid in LISTS.wnids:  # whole-class directory links with absolute targets
        link = root / "train" / wnid
        assert link.is_symlink() and os.readlink(link) == str(tree.root / "train" / wnid)
    e = LISTS.validation[0]
    val = root / "validation" / e.wnid / e.name
    assert not val.is_symlink() and val.read_bytes() == (tree.root / "val" / e.label / e.name).read_bytes()
    with zipfile.ZipFile(ann_zip) as zf:  # every mask is the official file, byte for byte
        for seg in ("validation-segmentation", "train-semi-segmentation"):
            for rel, path in files_under(root / seg).items():
                assert path.read_bytes() == zf.read(f"ImageNetS50/{seg}/{rel}")
    counts = {s.split: s.samples for s in rep.splits}
    assert counts == {"train": sum(tree.train_counts.values()), "train-semi": 500, "validation": 752, "test": 1682}
    assert "non-standard" in report(rep, params)
    # a re-run changes nothing, and the source was never touched
    masks = {rel: p.stat().st_mtime_ns for rel, p in files_under(root / "validation-segmentation").items()}
    again = export(params, "out", OPTS)
    assert {rel: p.stat().st_mtime_ns for rel, p in files_under(root / "validation-segmentation").items()} == masks
    assert again.samples_written == 0 and {s.split: s.existing for s in again.splits} == counts
    assert source_files(tree) == before


def test_copy_mode_rerun_and_switch_from_symlinks(tree, tmp_path):
    before = source_files(tree)
    params = {"subset": 50, "imagenet": str(tree.root), "format": "folder", "splits": "train,test"}
    export(params, tmp_path, OPTS)  # symlinks first
    rep = export({**params, "link": "copy"}, tmp_path, OPTS)
    root = tmp_path / "ImageNetS50"
    assert sorted(os.listdir(root)) == ["test", "train"]
    files = files_under(root / "train")
    assert set(files) == expected_layout(tree)["train"]
    for rel, path in files.items():
        assert not path.is_symlink() and not path.parent.is_symlink()
        assert path.read_bytes() == (tree.root / "train" / rel).read_bytes()
    assert rep.splits[0].created == len(files)
    assert source_files(tree) == before  # copying never wrote through the old directory links
    stamp = {rel: p.stat().st_mtime_ns for rel, p in files.items()}
    again = export({**params, "link": "copy"}, tmp_path, OPTS)
    assert again.samples_written == 0
    assert {rel: p.stat().st_mtime_ns for rel, p in files_under(root / "train").items()} == stamp
    # a killed run's temporary file is cleaned up and the damaged copy is replaced
    victim = next(iter(files.values()))
    victim.write_bytes(b"torn")
    Path(str(victim) + ".dktmp").write_bytes(b"partial")
    export({**params, "link": "copy"}, tmp_path, OPTS)
    assert victim.read_bytes() != b"torn" and not Path(str(victim) + ".dktmp").exists()


def test_hardlinks(tree, tmp_path):
    params = {"subset": 50, "imagenet": str(tree.root), "format": "folder", "splits": ["train"], "link": "hardlink"}
    export(params, tmp_path, OPTS)
    for rel, path in files_under(tmp_path / "ImageNetS50" / "train").items():
        assert os.path.samefile(path, tree.root / "train" / rel) and not path.is_symlink()
    assert export(params, tmp_path, OPTS).samples_written == 0


def test_missing_images_in_folder_export(tree, tmp_path):
    root = tmp_path / "imnet"
    (root / "val").mkdir(parents=True)
    for e in LISTS.test[3:]:
        os.symlink(tree.root / "val" / e.label / e.name, root / "val" / e.name)
    params = {"subset": 50, "imagenet": str(root), "format": "folder", "splits": "test"}
    with pytest.raises(InputError, match="3 source image"):
        export(params, tmp_path / "out", OPTS)
    with pytest.warns(UserWarning):
        rep = export({**params, "allow_missing": True}, tmp_path / "out", OPTS)
    assert rep.splits[0].samples == 1682 - 3 and rep.splits[0].failures == {"missing_image": 3}
    assert len(files_under(tmp_path / "out" / "ImageNetS50" / "test")) == 1682 - 3


@pytest.fixture(scope="module")
def tree919(tmp_path_factory) -> tuple[Tree, list[str]]:
    tree = make_tree(tmp_path_factory.mktemp("imagenet919"), subset=919, extra_train=1, with_val=False, with_semi=False)
    return tree, add_unlisted_train(tree.root, tree)


@pytest.mark.parametrize("link", ["copy", "symlink"])
def test_919_merges_and_train_full(tree919, link, tmp_path):
    tree, unlisted = tree919
    lists = load_lists(919)
    params = {"subset": 919, "imagenet": str(tree.root), "format": "folder", "splits": "train", "link": link}
    rep = export(params, tmp_path, OPTS)
    root = tmp_path / "ImageNetS919"
    train = files_under(root / "train")
    assert len(train) == 924 and {rel.split("/")[0] for rel in train} == set(lists.wnids)
    for source, target in lists.merges.items():
        assert {p.name for p in (root / "train" / target).iterdir()} == {f"{target}_900000.JPEG", f"{source}_900000.JPEG"}
        assert not (root / "train" / source).exists()
        assert not (root / "train" / target).is_symlink()
    full = files_under(root / "train-full")
    assert len(full) == 1000 and {rel.split("/")[0] for rel in full} >= set(unlisted)
    counts = {s.split: s.samples for s in rep.splits}
    assert counts == {"train": 924, "train-full": 1000}
    if link == "symlink":
        assert os.readlink(root / "train-full") == str(tree.root / "train")
    else:
        assert all(not p.is_symlink() for p in list(train.values()) + list(full.values()))
    assert export(params, tmp_path, OPTS).samples_written == 0
