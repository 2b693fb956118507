"""Every file of a build reaches a URL output through the one output layer; nothing lands on local disk.

The earlier design wrote COCO-20K's COCOeval JSON with ``Path(out) / ...``, which made a local
``./memory:/bucket/...`` folder for ``--out memory://bucket/...``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import numpy as np
from PIL import Image

from datakit.io import open_output
from datakit.pipeline import BuildOptions, build
from datakit.shards.index import load_index
from datakit.shards.verify import verify
from datakit.sources import coco
from datakit.sources.coco.twentyk import SEL_NAME

FIX = Path(__file__).parent / "fixtures" / "coco"


def coco20k_root(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2014").mkdir()
    obj = json.loads((FIX / "instances_val2017_448263.json").read_text())
    obj["images"][0]["file_name"] = "COCO_train2014_000000448263.jpg"
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(obj))
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(root / "train2014" / "COCO_train2014_000000448263.jpg")
    filelist = tmp_path / "list.txt"
    filelist.write_text("train2014/COCO_train2014_000000448263.jpg\n")
    return root, filelist


def test_a_url_output_gets_every_file_and_the_disk_gets_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root, filelist = coco20k_root(tmp_path)
    url = "memory://bucket-20k/shards"
    source = coco.make_source({"src": str(root), "kind": "instances20k", "filelist": str(filelist)})
    rep = build(source, url, None, BuildOptions(workers=1, progress=False))
    assert rep.splits[0].samples == 1
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/bucket-20k/shards/train", detail=False))
    assert names == ["README.md", "index.json", SEL_NAME, "train-000000.stats.json", "train-000000.tar"]
    sel = json.loads(fs.cat_file("/bucket-20k/shards/train/" + SEL_NAME))
    assert [i["id"] for i in sel["images"]] == [448263]
    assert sorted(os.listdir(tmp_path)) == ["coco", "list.txt"]  # no ./memory: folder
    index = load_index(f"{url}/train")
    assert index.extra["extra_files"][SEL_NAME] and verify(f"{url}/train")[0].ok


def test_outputs_name_only_plain_files(tmp_path):
    import pytest

    from datakit.errors import InputError

    out = open_output(str(tmp_path))
    for bad in ("../x", "/etc/passwd", "a/b", ".."):
        with pytest.raises(InputError, match="not a plain file name"):
            out.write_bytes("train", bad, b"x")
    assert not (tmp_path / "x").exists()
