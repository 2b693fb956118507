"""`datakit show` on the real output of every recipe the fixtures can feed: what is drawn, and how."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from datakit.errors import InputError
from datakit.inspect.palette import IGNORE_COLOR, color_of, colorize
from datakit.inspect.show import LEGEND_MAX, GridOptions, draw, instance_outlines, render, tile
from datakit.shards.index import find_indexes, load_index
from datakit.shards.reader import iter_split
from helpers_outputs import RECIPES, built

DATAKIT = [sys.executable, "-m", "datakit.cli.main"]


def run(*args, env=None):
    return subprocess.run([*DATAKIT, *map(str, args)], capture_output=True, text=True, env=env)


def samples(index):
    return list(iter_split(index))


def expected_legend_ids(drawn: list[dict], spec) -> set[int]:
    """The class ids the drawn samples really hold (mask values except ignore, cls, listed instances)."""
    ids: set[int] = set()
    mask = spec.masks[0].ext if spec.masks else None
    for s in drawn:
        if mask:
            ids |= {int(v) for v in np.unique(s[mask])} - {spec.ignore_id}
        if "cls" in s:
            ids.add(int(s["cls"]))
        inst = s.get("json", {}).get("instances")
        if isinstance(inst, list):
            ids |= {int(i["category_id"]) for i in inst}
    return ids


def test_show_draws_coco2017_whose_json_counts_instances(tmp_path_factory, tmp_path):
    """The defect: COCO-2017 semantic json has ``"instances": <count>``; show crashed iterating it."""
    out = built("coco2017", tmp_path_factory)
    index = load_index(out / "val")
    first = samples(index)[0]
    assert isinstance(first["json"]["instances"], int)
    assert instance_outlines(first["json"], (first["jpg"].shape[1], first["jpg"].shape[0])) == []
    proc = run("show", out, "--out", tmp_path / "g.png", "--n", "5", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "g.png").exists()


def test_every_packaged_recipe_is_covered():
    from datakit.pipeline.recipes import list_recipes

    assert sorted(RECIPES) == list_recipes()


@pytest.mark.parametrize("recipe", RECIPES)
def test_show_works_on_every_recipe_output(recipe, tmp_path_factory, tmp_path):
    out = built(recipe, tmp_path_factory)
    for index in find_indexes(out):
        spec = index.spec
        grid = draw(str(out / spec.split), tmp_path / f"{spec.split}.png", GridOptions(count=4, thumb=96, progress=False))
        drawn = samples(index)[:4]
        assert grid.keys == [s["__key__"] for s in drawn]  # the first samples, in stored order
        with Image.open(tmp_path / f"{spec.split}.png") as img:
            assert img.mode == "RGB" and img.size == grid.image.size
        ids = [cid for cid, text in grid.legend if not text.startswith(f"{spec.ignore_id} ignore") or not spec.masks]
        want = sorted(expected_legend_ids(drawn, spec))
        if len(want) > LEGEND_MAX:  # COCO-Stuff's generated maps hold all 171 classes: the legend says how many more
            assert ids == want[:LEGEND_MAX] + [-1] and f"and {len(want) - LEGEND_MAX} more" in grid.legend[LEGEND_MAX][1]
        else:
            assert ids == want
        names = spec.classes.names() if spec.classes else {}
        for (cid, text), box in zip(grid.legend, grid.swatches):
            if cid < 0:
                continue
            is_ignore = bool(spec.masks) and cid == spec.ignore_id
            assert text.startswith(f"{cid} {'ignore' if is_ignore else names.get(cid, '?')}")
            x0, y0, x1, y1 = box
            assert grid.image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == (IGNORE_COLOR if is_ignore else color_of(cid))
        if spec.masks:  # the ignore id is always in the legend of a mask split, last
            assert grid.legend[-1][0] == spec.ignore_id and "ignore" in grid.legend[-1][1]


def test_mask_overlay_colours_and_ignore_grey(tmp_path_factory):
    """alpha=1 shows the label colours exactly; VOC's 255 boundary band is the ignore grey."""
    index = load_index(built("voc2012", tmp_path_factory) / "train")
    s = samples(index)[0]
    h, w = s["seg.png"].shape
    t = tile(s, index.spec, GridOptions(thumb=max(h, w), alpha=1.0, progress=False))
    got = np.asarray(t.image)
    want = colorize(s["seg.png"], 255)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert (got[s["seg.png"] == 255] == IGNORE_COLOR).all() and t.ignore_shown
    assert t.classes == set(np.unique(s["seg.png"]).tolist()) - {255}


def test_ignore_id_of_16_bit_masks_is_in_the_legend(tmp_path_factory):
    index = load_index(built("imagenets", tmp_path_factory) / "validation")
    grid = render(index, GridOptions(count=3, thumb=64, progress=False))
    assert grid.legend[-1] == (1000, "1000 ignore")  # the generated masks hold 1000 in a band


def test_image_label_tiles_carry_their_class_name(tmp_path_factory):
    index = load_index(built("imagenet21k", tmp_path_factory) / "train")
    names = index.spec.classes.names()
    drawn = samples(index)
    grid = render(index, GridOptions(count=len(drawn), thumb=80, progress=False))
    assert grid.labels == [names[s["cls"]] for s in drawn]
    assert {names[s["cls"]] for s in drawn} == {"benthos", "cell", "person"}
    for (x0, y0, x1, y1), s in zip(grid.tile_boxes, drawn):
        assert grid.image.getpixel((x0, y1 - 1)) == color_of(s["cls"])  # the frame in the class colour
        assert grid.image.getpixel((x1 - 2, y0 + 2)) == (0, 0, 0)      # the name banner


def test_instance_outlines_in_class_colours(tmp_path_factory):
    index = load_index(built("coco20k", tmp_path_factory) / "train")
    s = samples(index)[0]
    size = (s["jpg"].shape[1], s["jpg"].shape[0])
    outlines = instance_outlines(s["json"], size)
    assert len(outlines) == len(s["json"]["instances"]) == 16
    t = tile(s, index.spec, GridOptions(thumb=max(size), progress=False))
    cid, edges = outlines[-1]
    assert edges.any() and (np.asarray(t.image)[edges] == color_of(cid)).all()
    assert t.classes == {1, 37, 40}


def test_shuffle_is_seeded(tmp_path_factory):
    index = load_index(built("imagenets", tmp_path_factory) / "validation")
    keys = [s["__key__"] for s in iter_split(index, decode=False)]

    def drawn(seed):
        return render(index, GridOptions(count=5, thumb=32, shuffle=True, seed=seed, progress=False)).keys

    a, b, c = drawn(1), drawn(1), drawn(2)
    assert a == b and a != c and len(set(a)) == 5 and set(a) <= set(keys)
    assert a != keys[:5]


def test_classes_pick_samples_showing_them(tmp_path_factory):
    index = load_index(built("coco2017", tmp_path_factory) / "val")
    names = index.spec.classes.names()
    ball = next(i for i, n in names.items() if n == "sports ball")
    everything = samples(index)
    with_ball = [s["__key__"] for s in everything if ball in np.unique(s["seg.png"])]
    assert with_ball == ["000000448263"]
    assert render(index, GridOptions(count=4, thumb=32, classes=("Sports Ball",), progress=False)).keys == with_ball
    assert render(index, GridOptions(count=4, thumb=32, classes=(str(ball),), progress=False)).keys == with_ball
    with_person = [s["__key__"] for s in everything if 1 in np.unique(s["seg.png"])]
    assert len(with_person) == 5
    assert render(index, GridOptions(count=2, thumb=32, classes=("person",), progress=False)).keys == with_person[:2]
    picked = render(index, GridOptions(count=2, thumb=32, classes=("person,sports ball",), shuffle=True, seed=0,
                                       progress=False)).keys
    assert len(picked) == 2 and set(picked) <= set(with_person)
    with pytest.raises(InputError, match="did you mean person"):
        render(index, GridOptions(count=2, classes=("persn",), progress=False))
    with pytest.raises(InputError, match="no sample .* shows bus"):
        render(index, GridOptions(count=2, classes=("bus",), progress=False))


def test_cli_show_options_progress_and_errors(tmp_path_factory, tmp_path):
    out = built("coco2017", tmp_path_factory)
    env = {**os.environ, "DATAKIT_PROGRESS_INTERVAL": "0"}
    proc = run("show", out, "-o", tmp_path / "g.png", "--classes", "person", "--shuffle", "--seed", "3", "--n", "2", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "show: scanning coco2017/val: 5/5 (100%)" in proc.stderr  # a batch-log status line (stderr is a pipe)
    assert "2 samples" in proc.stdout
    bad = run("show", out, "-o", tmp_path / "h.png", "--classes", "unicorn")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("datakit: error: --classes: no class 'unicorn'")


def test_a_second_mask_is_drawn_without_the_semantic_ignore(tmp_path_factory):
    """VOC saliency (sal.png, 0/255): 255 is 'salient' there, not the semantic mask's ignore id."""
    index = load_index(built("voc2012", tmp_path_factory) / "train")
    grid = render(index, GridOptions(count=2, thumb=64, mask="sal.png", progress=False))
    assert [cid for cid, _ in grid.legend] == [0, 255] and "ignore" not in grid.legend[1][1]
    x0, y0, x1, y1 = grid.swatches[1]
    assert grid.image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == color_of(255)
    with pytest.raises(InputError, match="no mask member 'edges.png'"):
        render(index, GridOptions(count=2, mask="edges.png", progress=False))
