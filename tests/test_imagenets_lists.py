"""ImageNet-S lists, parameters and `datakit info imagenets` (no images needed)."""

from __future__ import annotations

import os

import pytest
import typer
from typer.testing import CliRunner

from datakit.cli import imagenets as imagenets_cli
from datakit.errors import InputError
from datakit.imagenets.info import cross_overlaps, format_info, subset_info
from datakit.imagenets.lists import PUBLISHED, SUBSETS, imagenet_wnids, load_lists, parse_subset
from datakit.imagenets.params import parse_imagenets_params, parse_split_name, split_name


@pytest.mark.parametrize("subset", SUBSETS)
def test_list_sizes_match_published_counts(subset):
    lists = load_lists(subset)
    assert len(lists.wnids) == subset
    assert len(lists.semi) == PUBLISHED[subset]["train-semi"]
    assert len(lists.validation) == PUBLISHED[subset]["validation"]
    assert len(lists.test) == PUBLISHED[subset]["test"]
    names = [e.name for e in lists.validation + lists.test]
    assert len(set(names)) == len(names)  # val and test never overlap within a subset


def test_class_table_ids_follow_sorted_wnids():
    lists = load_lists(300)
    table = lists.class_table()
    assert table.ignore_index == 1000
    assert table.entries[0].id == 0 and table.entries[0].name == "other"
    wnids = [e.extra["wnid"] for e in table.entries[1:]]
    assert wnids == sorted(wnids) and [e.id for e in table.entries[1:]] == list(range(1, 301))
    assert lists.class_id(wnids[44]) == 45


def test_duplicate_names_are_told_apart_in_919():
    names = [e.name for e in load_lists(919).class_table().entries]
    assert len(names) == len(set(names))
    by_wnid = {e.extra["wnid"]: e for e in load_lists(919).class_table().entries[1:]}
    assert by_wnid["n02012849"].extra["official_name"] == "crane"
    assert by_wnid["n03126707"].extra["official_name"] == "crane"


def test_merges_only_in_919():
    assert load_lists(50).merges == {} and load_lists(300).merges == {}
    sources = load_lists(919).train_sources()
    assert sum(len(v) for v in sources.values()) == 924
    assert sources["n02808440"] == ("n02808440", "n04493381")  # tub merged into bathtub
    assert len(imagenet_wnids()) == 1000
    # train-semi of 919 takes 20 images from merged folders
    assert sum(e.source_wnid != e.wnid for e in load_lists(919).semi) == 20


def test_documented_cross_subset_overlaps_are_found():
    found = {(o.subset, o.split, o.other, o.other_split): o.names for o in cross_overlaps()}
    assert found[(50, "test", 300, "validation")] == ("ILSVRC2012_val_00015323.JPEG",)
    assert len(found[(300, "test", 919, "validation")]) == 19
    for (a, sa, b, sb), names in found.items():
        assert set(names) <= {e.name for e in getattr(load_lists(a), sa)}
        assert set(names) <= {e.name for e in getattr(load_lists(b), sb)}
        assert sa != sb


def test_info_text_lists_classes_and_overlaps():
    text = format_info(subset_info(50))
    lines = text.splitlines()
    assert any(line.split()[:2] == ["1", "n01443537"] for line in lines)
    assert "1 ImageNetS50 test image is ImageNetS300 validation" in text
    assert "ILSVRC2012_val_00015323" in text
    info300 = format_info(subset_info(300), classes=False)
    assert "19 ImageNetS300 test images are ImageNetS919 validation" in info300
    assert "id  wnid" not in info300  # --no-classes


def test_cli_info():
    app = typer.Typer()
    app.add_typer(imagenets_cli.app)
    res = CliRunner().invoke(app, ["info", "imagenets", "--subset", "919", "--no-classes"])
    assert res.exit_code == 0, res.output
    assert "19 ImageNetS300 test images are ImageNetS919 validation" in res.output
    res = CliRunner().invoke(app, ["info", "imagenets", "--subset", "51"])
    assert isinstance(res.exception, InputError)


def test_parse_subset_forms():
    assert parse_subset("300") == 300 and parse_subset(919) == 919 and parse_subset("ImageNetS50") == 50
    with pytest.raises(InputError):
        parse_subset("1000")


def test_params_from_strings_and_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "imnet").mkdir()
    monkeypatch.chdir(tmp_path)
    p = parse_imagenets_params({"subset": "300", "imagenet": "imnet", "allow_missing": "yes", "splits": "test,validation",
                      "format": "folder", "link": "copy"})
    assert p.subsets == (300,) and p.allow_missing and p.format == "folder" and p.link == "copy"
    assert p.imagenet == os.path.join(str(tmp_path), "imnet") and os.path.isabs(p.imagenet)
    assert p.splits == ("validation", "test")  # canonical order
    assert p.split_names() == ["validation", "test"]
    assert parse_imagenets_params({"subset": "50", "imagenet": "imnet", "splits": "train,val"}).splits == (
        "train", "validation")  # val is the same alias every converter takes
    every = parse_imagenets_params({"subset": "all", "src": "imnet", "splits": []})
    assert every.split_names()[:2] == ["s50-train", "s50-train-semi"] and len(every.split_names()) == 12
    assert parse_split_name("s919-test", every.subsets) == (919, "test")
    assert split_name(300, "test", True) == "s300-test"


@pytest.mark.parametrize("bad", [
    {"subset": "50", "imagenet": "imnet", "colour": "red"},
    {"imagenet": "imnet"},
    {"subset": "50"},
    {"subset": "50", "imagenet": "nowhere"},
    {"subset": "50", "imagenet": "imnet", "link": "junction"},
    {"subset": "50", "imagenet": "imnet", "format": "tfrecord"},
    {"subset": "50", "imagenet": "imnet", "allow_missing": "perhaps"},
    {"subset": "50", "imagenet": "imnet", "splits": "train,dev"},
    {"subset": "50", "imagenet": "imnet", "annotations": "missing.zip"},
    {"subset": "50", "imagenet": "imnet", "src": "other"},
])
def test_bad_params_are_input_errors(bad, tmp_path, monkeypatch):
    (tmp_path / "imnet").mkdir()
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError):
        parse_imagenets_params(bad)
