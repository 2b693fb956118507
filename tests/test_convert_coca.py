"""CoCA converter on a small generated tree in the documented layout (no real CoCA file is public)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datakit.pipeline import BuildOptions, build
from datakit.errors import InputError
from datakit.shards import codecs
from datakit.shards.index import load_index
from datakit.sources import coca
from helpers_foundation import read_split

NAMES = (Path(coca.__file__).parents[2] / "manifests" / "classes" / "coca80_names_zutis.txt").read_text().split("\n")
NAMES = [n.strip() for n in NAMES if n.strip()]
OPTS = BuildOptions(workers=1, progress=False)




def add_pair(root: Path, cat: str, stem: str, mask: np.ndarray | None, image: bool = True, mode: str = "L") -> None:
    h, w = (mask.shape if mask is not None else (20, 30))
    if image:
        (root / "image" / cat).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(len(stem))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "image" / cat / f"{stem}.jpg")
    if mask is not None:
        (root / "binary" / cat).mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(mask, "L")
        (img.convert(mode) if mode != "L" else img).save(root / "binary" / cat / f"{stem}.png")


def soft_disc(h: int, w: int, seed: int) -> np.ndarray:
    """A 0/255 disc with anti-aliased edge values, as re-saved masks often have."""
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - h / 2 - seed, xx - w / 2)
    return np.clip((8 - d) * 60 + 128, 0, 255).astype(np.uint8)


def test_pairs_by_category_and_stem(tmp_path: Path) -> None:
    root = tmp_path / "CoCA"
    cats = ["Yellow duck", "alarm clock", "UAV"]
    masks = {}
    for i, cat in enumerate(cats):
        # stems that sort differently from their masks would under a global sorted glob
        for stem in (f"{i}9", f"{i}10"):
            masks[(cat, stem)] = soft_disc(20, 30, i)
            add_pair(root, cat, stem, masks[(cat, stem)], mode="RGB" if cat == "UAV" else "L")
    report = build(coca.make_source({"src": str(root)}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 6 and not report.splits[0].failures
    got = read_split(tmp_path / "out", "test")
    for (cat, stem), grey in masks.items():
        key = f"{cat}_{stem}".replace(" ", "_")
        label = NAMES.index(cat) + 1
        want = np.where(grey > 127, label, 0)
        np.testing.assert_array_equal(codecs.decode_mask(got[key]["seg.png"]), want)
        assert json.loads(got[key]["json"])["category"] == cat
        assert {0, label} == set(np.unique(want))
    assert NAMES.index("Yellow duck") + 1 == 3  # ZUTIS's case-sensitive order, not sorted(os.listdir())
    spec = load_index(tmp_path / "out" / "test").spec
    assert spec.classes.names()[0] == "background" and spec.classes.names()[80] == NAMES[-1]
    assert "> 127" in spec.notes["binarisation"]
    assert "SHORTFALL 1,289" in coca.report(report, {"src": str(root)})


def test_orphans_sizes_and_unknown_categories(tmp_path: Path) -> None:
    root = tmp_path / "CoCA"
    disc = soft_disc(20, 30, 0)
    add_pair(root, "Accordion", "1", disc)
    add_pair(root, "Accordion", "2", None)                 # image without mask
    add_pair(root, "Accordion", "3", disc, image=False)    # mask without image
    add_pair(root, "Accordion", "4", disc[:10])            # sizes differ
    (root / "image" / "Accordion" / "4.jpg").unlink()
    add_pair(root, "Accordion", "4", None)
    (root / "binary" / "Accordion" / "4.png").unlink()
    Image.fromarray(disc[:10], "L").save(root / "binary" / "Accordion" / "4.png")
    add_pair(root, "Not a class", "1", disc)               # folder not in the class list
    (root / "binary" / "Accordion" / "5.png").write_bytes(b"garbage")
    add_pair(root, "Accordion", "5", None)
    report = build(coca.make_source({"src": str(root)}), tmp_path / "out", opts=OPTS)
    assert report.splits[0].samples == 1
    assert report.splits[0].failures == {"mask_size_mismatch": 1, "missing_image": 1, "missing_mask": 1,
                                         "unknown_label": 1, "unreadable_mask": 1}


def test_params(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="CoCA layout not found"):
        coca.make_source({"src": str(tmp_path)})
    with pytest.raises(InputError, match="unknown parameter"):
        coca.make_source({"src": str(tmp_path), "threshold": 100})
