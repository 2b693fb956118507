"""Image sizes of a subset's test split, which predictions must match pixel for pixel.

Read from built shards (the split's index), from an official ``ImageNetS{N}/test`` folder, or
from an ImageNet copy's ``val/`` (flat or class folders); only headers are read.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..shards.codecs import image_size
from ..shards.index import INDEX_NAME, load_index
from ..io import is_url
from ..shards.reader import iter_shard
from .inputs import index_val
from .lists import load_lists

Sizes = dict[str, tuple[int, int]]  # "<wnid>/<stem>" -> (width, height)


def _size_of(path: str) -> tuple[int, int]:
    """(width, height) of an image file from its first bytes (the whole file if needed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        try:
            return image_size(head)
        except (OSError, ValueError):
            with open(path, "rb") as f:
                return image_size(f.read())
    except OSError as err:
        raise InputError(f"cannot read the size of {path}: {err}") from None


def _from_shards(index_path: str, subset: int) -> Sizes:
    """Sizes from the jpg members of a built test split (checked to be this subset's test)."""
    index = load_index(index_path)
    notes = index.spec.notes
    if notes.get("subset") != subset or notes.get("split") != "test":
        raise InputError(f"{index_path}: holds ImageNetS{notes.get('subset')} {notes.get('split')}, "
                         f"not ImageNetS{subset} test")
    sizes: Sizes = {}
    for entry in index.shards:
        for sample in iter_shard(index.shard_path(entry)):
            meta = json.loads(sample["json"])
            sizes[f"{meta['wnid']}/{sample['__key__']}"] = image_size(sample["jpg"])
    return sizes


def _from_folder(test_dir: Path, subset: int) -> Sizes:
    """Sizes from an official ``ImageNetS{N}/test/<wnid>/`` folder."""
    sizes: Sizes = {}
    for e in load_lists(subset).test:
        path = test_dir / e.wnid / e.name
        if path.is_file():
            sizes[f"{e.wnid}/{e.name.rsplit('.', 1)[0]}"] = _size_of(str(path))
    return sizes


def _from_imagenet(root: str, subset: int) -> Sizes:
    """Sizes from the ImageNet val images, flat or in class folders."""
    found = index_val(root)
    return {f"{e.wnid}/{e.name.rsplit('.', 1)[0]}": _size_of(found[e.name].path)
            for e in load_lists(subset).test if e.name in found}


def _index_candidates(p: Path, subset: int) -> list[Path]:
    """Where a built test split's index may be under a dataset folder."""
    return [p / INDEX_NAME, p / "test" / INDEX_NAME, p / f"s{subset}-test" / INDEX_NAME]


def sizes_of_test_images(images: str, subset: int) -> Sizes:
    """Sizes of every test image found at ``images``; an incomplete source is an InputError."""
    if is_url(images):
        sizes = _from_shards(images, subset)
    else:
        p = Path(images)
        if p.is_file() and p.name.endswith(".json"):
            sizes = _from_shards(str(p), subset)
        elif not p.is_dir():
            raise InputError(f"test images not found: {images}")
        elif any(c.is_file() for c in _index_candidates(p, subset)):
            sizes = _from_shards(str(next(c for c in _index_candidates(p, subset) if c.is_file())), subset)
        elif (p / f"ImageNetS{subset}" / "test").is_dir():
            sizes = _from_folder(p / f"ImageNetS{subset}" / "test", subset)
        elif p.name == "test" or (p / "test").is_dir():
            sizes = _from_folder(p if p.name == "test" else p / "test", subset)
        elif (p / "val").is_dir():
            sizes = _from_imagenet(str(p), subset)
        else:
            raise InputError(f"{images}: expected built shards (test/index.json), an ImageNetS{subset}/test "
                             "folder or an ImageNet copy with val/")
    expected = {f"{e.wnid}/{e.name.rsplit('.', 1)[0]}" for e in load_lists(subset).test}
    absent = sorted(expected - set(sizes))
    if absent:
        raise InputError(f"{images}: lacks {len(absent)} of the {len(expected)} ImageNetS{subset} test images "
                         f"(e.g. {absent[0]}), so their sizes are unknown")
    return {k: sizes[k] for k in expected}
