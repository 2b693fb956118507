"""`datakit stats` on real built outputs: exact counts, absent classes, the long-tail chart, progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from datakit.inspect.plot import BAR, long_tail_chart
from datakit.inspect.stats import SplitStats, counter_summary, split_stats, stats, stats_json
from datakit.shards.index import load_index
from datakit.shards.reader import iter_split
from helpers_outputs import built

DATAKIT = [sys.executable, "-m", "datakit.cli.main"]
OLD_FIELDS = {"split", "samples", "shards", "bytes", "failures", "image_width", "image_height", "common_sizes",
              "class_pixels", "class_images"}


def run(*args, env=None):
    return subprocess.run([*DATAKIT, *map(str, args)], capture_output=True, text=True, env=env)


def expanded_summary(counts: Counter) -> dict:
    """The old definition, on the expanded list: sorted values, element len // 2 as the median."""
    values = sorted(v for v, n in counts.items() for _ in range(n))
    return {"min": values[0], "median": values[len(values) // 2], "max": values[-1]} if values else {}


def test_to_json_does_not_expand_size_counters():
    """The defect (#13): to_json built one list entry per image; five million images must cost nothing."""
    st = SplitStats("big/train", samples=5_000_000)
    st.image_sizes = Counter({(640, 480): 3_000_000, (500, 375): 1_999_999, (1024, 768): 1})
    tracemalloc.start()
    try:
        out = st.to_json({})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"to_json allocated {peak:,} bytes"
    assert out["image_width"] == {"min": 500, "median": 640, "max": 1024}
    assert out["image_height"] == {"min": 375, "median": 480, "max": 768}


@pytest.mark.parametrize("seed", range(20))
def test_counter_summary_equals_the_expanded_rule(seed):
    rng = np.random.default_rng(seed)
    counts = Counter({int(v): int(n) for v, n in zip(rng.integers(1, 50, 6), rng.integers(0, 5, 6))})
    assert counter_summary(counts) == expanded_summary(counts)


def test_pixel_and_image_counts_and_absent_classes(tmp_path_factory):
    out = built("ade150", tmp_path_factory)
    index = load_index(out / "val")
    pixels: Counter = Counter()
    images: Counter = Counter()
    for s in iter_split(index):
        ids, n = np.unique(s["seg.png"], return_counts=True)
        pixels.update(dict(zip(ids.tolist(), n.tolist())))
        images.update(ids.tolist())
    (record,) = stats_json(stats(str(out), workers=1, progress=False))
    assert OLD_FIELDS <= set(record)  # --json only ever gains fields
    assert {c["id"]: c["pixels"] for c in record["class_pixels"]} == dict(pixels)
    assert {c["id"]: c["images"] for c in record["class_images"]} == dict(images)
    names = index.spec.classes.names()
    assert record["ignore_id"] == 255 and record["class_count"] == 150
    absent = [c["id"] for c in record["absent_classes"]]
    assert absent == sorted(set(names) - set(images))
    assert all(c["name"] == names[c["id"]] for c in record["absent_classes"])
    assert next(c for c in record["class_pixels"] if c["id"] == 255)["name"] == "(ignore)"
    parallel = split_stats(index, workers=2)
    assert parallel.class_pixels == pixels and parallel.image_sizes == split_stats(index, workers=1).image_sizes


def test_image_level_labels_count_images_per_class(tmp_path_factory):
    out = built("imagenet21k", tmp_path_factory)
    (record,) = stats_json(stats(str(out), workers=1, progress=False))
    assert {c["name"]: c["images"] for c in record["class_images"]} == {"benthos": 2, "cell": 2, "person": 1}
    assert record["class_pixels"] == [] and record["ignore_id"] is None
    assert record["class_count"] == len(load_index(out / "train").spec.classes.entries)
    assert len(record["absent_classes"]) == record["class_count"] - 3


def test_long_tail_chart_bars_are_sorted_and_drawn(tmp_path_factory):
    records = stats_json(stats(str(built("ade150", tmp_path_factory)), workers=1, progress=False))
    chart = long_tail_chart(records)
    assert [p.measure for p in chart.panels] == ["pixels", "images"]
    pixels, images = chart.panels
    present = [c for c in records[0]["class_pixels"] if c["id"] != 255]
    assert sorted(cid for cid, _, _ in pixels.bars) == sorted(c["id"] for c in present)
    values = [v for _, v, _ in pixels.bars]
    assert values == sorted(values, reverse=True) and pixels.log  # ADE pixel counts span many decades
    heights = [rect[3] - rect[1] for _, _, rect in pixels.bars]
    assert heights == sorted(heights, reverse=True) and heights[0] > heights[-1]
    for _, _, (x0, _top, x1, y1) in pixels.bars + images.bars:
        assert chart.image.getpixel(((x0 + x1) // 2, y1)) == BAR
    assert not images.log  # 1..3 images per class: a linear axis


def test_cli_stats_plot_json_text_and_progress(tmp_path_factory, tmp_path):
    out = built("coco2017", tmp_path_factory)
    env = {**os.environ, "DATAKIT_PROGRESS_INTERVAL": "0"}
    proc = run("stats", out, "--json", "--plot", tmp_path / "tail.png", "-w", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)
    assert {c["name"] for c in record["class_images"]} == {"background", "person", "sports ball", "baseball glove", "(ignore)"}
    assert len(record["absent_classes"]) == 77 and {"id": 2, "name": "bicycle"} in record["absent_classes"]
    assert "stats coco2017/val: 5/5 (100%)" in proc.stderr  # batch-log status line: stderr is not a terminal
    with Image.open(tmp_path / "tail.png") as img:
        assert img.format == "PNG" and img.width == 1100 and img.height > 500
    text = run("stats", out, "-w", "1", "--no-progress")
    assert text.returncode == 0 and "absent classes: 77 of 81: 2 bicycle, 3 car" in text.stdout
    assert text.stderr == ""
