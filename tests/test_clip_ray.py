"""CLIP indexing with Ray actors as ranks: the same parts and table as a single-process index."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pytest.importorskip("open_clip")

from datakit.clip.embed import IndexOptions, build_index  # noqa: E402
from datakit.clip.images import parse_input  # noqa: E402
from datakit.clip.model import ModelSpec, register_tiny_model  # noqa: E402
from datakit.clip.ray_index import build_index_on_ray  # noqa: E402


@pytest.mark.slow
def test_ray_actors_build_the_same_index_as_one_process(tmp_path: Path, ray_cluster):
    root = tmp_path / "pass" / "images"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(14):
        Image.fromarray(rng.integers(0, 255, (40, 50 + i, 3), dtype=np.uint8)).save(root / f"{i:04d}.jpg")
    name = register_tiny_model()
    opts = IndexOptions(model=ModelSpec(name, None), device="cpu", workers=0, part_size=4, progress=False, batch_size=3)
    inputs = [parse_input(str(root))]
    single = build_index(inputs, tmp_path / "single", opts, notify=lambda m: None)
    assert single.manifest is not None
    reports = build_index_on_ray(inputs, tmp_path / "ray", opts, actors=2, setup=register_tiny_model)
    assert sorted(r.rank for r in reports) == [0, 1] and sum(r.parts_written for r in reports) == 4
    assert any(r.manifest is not None for r in reports)
    a = sorted((tmp_path / "single" / "parts").glob("*.npy"))
    b = sorted((tmp_path / "ray" / "parts").glob("*.npy"))
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 4
    for x, y in zip(a, b):
        assert np.array_equal(np.load(x), np.load(y))
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "single" / "table.parquet").equals(pq.read_table(tmp_path / "ray" / "table.parquet"))
