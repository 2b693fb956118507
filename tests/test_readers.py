"""Every recipe's output opens losslessly in the readers researchers already use.

For each recipe built from the fixtures, the masks read through webdataset's default decoders
(``.decode("pil")`` and ``.decode("rgb8")``), wids on ``index.json`` and Hugging Face ``datasets``
on the split folder must give exactly the ids datakit's own reader gives, pixel for pixel: 8-bit
ids from the grey PNGs, ids >= 256 (ImageNet-S's 1000, ADE-847's 65535) as R + 256*G.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datakit.shards.index import SplitIndex, find_indexes
from datakit.shards.reader import iter_split
from helpers_outputs import RECIPES, built

wds = pytest.importorskip("webdataset")
wids = pytest.importorskip("wids")
datasets = pytest.importorskip("datasets")


def ids_of(image: Any, encoding: str) -> np.ndarray:
    """Class ids from what a reader returned (a PIL image or an HxW[x3] array), by the index's encoding."""
    arr = np.asarray(image)
    if arr.dtype.kind == "f":  # webdataset's float decoders: value / 255
        arr = np.rint(arr * 255).astype(np.uint8)
    if encoding == "rgb16":
        return arr[..., 0].astype(np.int64) + 256 * arr[..., 1].astype(np.int64)
    return (arr[..., 0] if arr.ndim == 3 else arr).astype(np.int64)


def ours(index: SplitIndex) -> dict[str, dict[str, np.ndarray]]:
    masks = [m.ext for m in index.spec.masks]
    return {s["__key__"]: {ext: s[ext].astype(np.int64) for ext in masks} for s in iter_split(index)}


def split_indexes(name: str, factory: Any) -> list[SplitIndex]:
    return [ix for ix in find_indexes(built(name, factory)) if ix.spec.masks]


MASKED = [r for r in RECIPES if r not in ("coco20k", "imagefolder", "imagenet21k", "pass")]


def check(index: SplitIndex, got: dict[str, dict[str, Any]], reader: str) -> None:
    want = ours(index)
    assert sorted(got) == sorted(want), reader
    encodings = index.spec.to_json()["mask_encoding"]
    for key, members in want.items():
        for ext, ids in members.items():
            np.testing.assert_array_equal(ids_of(got[key][ext], encodings[ext]), ids, err_msg=f"{reader} {key} {ext}")


@pytest.mark.parametrize("name", MASKED)
@pytest.mark.parametrize("decoder", ["pil", "rgb8", "rgb"])
def test_webdataset_default_decoders_keep_every_id(name, decoder, tmp_path_factory):
    for index in split_indexes(name, tmp_path_factory):
        urls = [index.shard_path(e) for e in index.shards]
        ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode(decoder)
        check(index, {s["__key__"]: s for s in ds}, f"webdataset {decoder}")


@pytest.mark.parametrize("name", MASKED)
def test_wids_on_the_index_keeps_every_id(name, tmp_path_factory):
    for index in split_indexes(name, tmp_path_factory):
        from wids.wids_decode import default_decoder

        ds = wids.ShardListDataset(str(Path(index.base) / "index.json"), transformations=partial(default_decoder, format="PIL"))
        got = {}
        for i in range(len(ds)):
            s = ds[i]
            got[s["__key__"]] = {k.lstrip("."): v for k, v in s.items()}
        check(index, got, "wids")


@pytest.mark.parametrize("name", MASKED)
def test_hugging_face_datasets_reads_the_split_folder(name, tmp_path_factory, tmp_path):
    for index in split_indexes(name, tmp_path_factory):
        loaded = datasets.load_dataset(index.base, cache_dir=str(tmp_path / "hf"))
        (split,) = loaded.values()
        assert set(split.column_names) == set(index.spec.members()) | {"__key__", "__url__"}
        check(index, {row["__key__"]: row for row in split}, "datasets")


def test_datasets_with_one_cache_reads_each_folder_and_each_rebuild_as_it_is(tmp_path_factory, tmp_path):
    """``datasets`` names its cache after the folder (``val``, ``train``...) and the card's config;
    every recipe's splits share one cache here, as they do in a user's ~/.cache."""
    cache = str(tmp_path / "hf")
    indexes = [ix for name in MASKED for ix in split_indexes(name, tmp_path_factory)]
    assert len({Path(ix.base).name for ix in indexes}) < len(indexes)  # several folders share a name
    for index in indexes:
        (split,) = datasets.load_dataset(index.base, cache_dir=cache).values()
        check(index, {row["__key__"]: row for row in split}, f"datasets {index.spec.dataset}/{index.spec.split}")
    # a rebuild with other content in the same place: the new samples, not the cached ones
    from datakit.pipeline import BuildOptions, build
    from helpers_foundation import ListSource, make_items

    out = tmp_path / "again"
    for count in (3, 5):
        build(ListSource(make_items(count)), out, None, BuildOptions(overwrite=True, progress=False))
        (split,) = datasets.load_dataset(str(out / "train"), cache_dir=cache).values()
        assert len(split) == count


def test_unmasked_splits_load_in_datasets_with_their_members(tmp_path_factory, tmp_path):
    for name in ("imagenet21k", "pass"):
        (index,) = find_indexes(built(name, tmp_path_factory))
        (split,) = datasets.load_dataset(index.base, cache_dir=str(tmp_path / name)).values()
        assert len(split) == index.total
        assert set(split.column_names) == set(index.spec.members()) | {"__key__", "__url__"}


def test_the_16_bit_outputs_really_hold_ids_above_255(tmp_path_factory):
    """Without ids >= 256 the tests above could not see clipping."""
    for name, ignore in (("ade847", 65535), ("imagenets", 1000)):
        (index,) = split_indexes(name, tmp_path_factory)
        assert index.spec.to_json()["mask_encoding"] == {"seg.png": "rgb16"}
        assert any((m["seg.png"] == ignore).any() for m in ours(index).values())
