"""Generate a small ImageNet-like tree whose file names come from the real ImageNet-S lists.

Every validation/test/train-semi image of the subset exists, plus a few extra train images per
class; some files are odd on purpose (a CMYK JPEG, a PNG named .JPEG, greyscale JPEGs). Masks
are official-style RGB PNGs (id = R + 256*G) with 0, the image's class and 1000 (ignore).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from datakit.imagenets.lists import SubsetLists, load_lists

SIZES = ((32, 24), (24, 32), (40, 30))
CMYK_TRAIN_INDEX = 0   # first extra train image of the first class
PNG_TRAIN_INDEX = 1    # second extra train image of the first class


@dataclass
class Tree:
    root: Path
    subset: int
    train_counts: dict[str, int] = field(default_factory=dict)   # class wnid -> images it gets
    odd: dict[str, str] = field(default_factory=dict)             # file name -> kind
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # file stem -> (w, h)


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def image_size(name: str) -> tuple[int, int]:
    return SIZES[_seed(name) % len(SIZES)]


def _image(name: str) -> Image.Image:
    w, h = image_size(name)
    rng = np.random.default_rng(_seed(name))
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _encode(name: str, kind: str) -> bytes:
    img = _image(name)
    buf = io.BytesIO()
    if kind == "cmyk":
        img.convert("CMYK").save(buf, "JPEG", quality=90)
    elif kind == "png":
        img.save(buf, "PNG")
    elif kind == "grey":
        img.convert("L").save(buf, "JPEG", quality=90)
    else:
        img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write(path: Path, name: str, kind: str, tree: Tree) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encode(name, kind))
    tree.sizes[name.rsplit(".", 1)[0]] = image_size(name)
    if kind != "rgb":
        tree.odd[name] = kind


def make_tree(root: Path, subset: int = 50, extra_train: int = 2, flat_val: bool = False,
              with_val: bool = True, with_semi: bool = True) -> Tree:
    """Write ``root/train/<wnid>/...`` and ``root/val/...`` (class folders by ImageNet label, or flat)."""
    lists = load_lists(subset)
    tree = Tree(root, subset)
    for wnid, sources in lists.train_sources().items():
        tree.train_counts[wnid] = 0
        for source in sources:
            for k in range(extra_train):
                name = f"{source}_{900000 + k}.JPEG"
                kind = "rgb"
                if wnid == lists.wnids[0] and k == CMYK_TRAIN_INDEX:
                    kind = "cmyk"
                elif wnid == lists.wnids[0] and k == PNG_TRAIN_INDEX:
                    kind = "png"
                _write(root / "train" / source / name, name, kind, tree)
                tree.train_counts[wnid] += 1
    for e in lists.semi if with_semi else ():
        kind = "grey" if e.name == lists.semi[3].name else "rgb"
        _write(root / "train" / e.source_wnid / e.name, e.name, kind, tree)
        tree.train_counts[e.wnid] += 1
    if with_val:
        odd_val = {lists.test[0].name: "cmyk", lists.validation[1].name: "grey"}
        for e in lists.validation + lists.test:
            folder = root / "val" if flat_val else root / "val" / e.label
            _write(folder / e.name, e.name, odd_val.get(e.name, "rgb"), tree)
    return tree


def expected_mask(lists: SubsetLists, wnid: str, name: str) -> np.ndarray:
    """The ids a generated mask holds: left third other, middle the class, right band ignore."""
    w, h = image_size(name)
    ids = np.zeros((h, w), dtype=np.int32)
    ids[:, w // 3:] = lists.class_id(wnid)
    ids[: h // 2, (2 * w) // 3:] = 1000
    return ids


def _mask_png(ids: np.ndarray) -> bytes:
    rgb = np.stack([ids % 256, ids // 256, np.zeros_like(ids)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "PNG")
    return buf.getvalue()


def annotation_files(subset: int, skip: frozenset[str] = frozenset()) -> dict[str, bytes]:
    """``<seg dir>/<wnid>/<stem>.png`` -> official RGB mask bytes for every listed image."""
    lists = load_lists(subset)
    out = {}
    for split, entries in (("train-semi-segmentation", lists.semi), ("validation-segmentation", lists.validation)):
        for e in entries:
            if e.name not in skip:
                out[f"{split}/{e.wnid}/{e.mask_name}"] = _mask_png(expected_mask(lists, e.wnid, e.name))
    return out


def write_annotations(root: Path, subset: int, as_zip: bool, skip: frozenset[str] = frozenset()) -> Path:
    """The official zip (``ImageNetS{N}/...`` inside) or its extracted folder; returns the path."""
    files = annotation_files(subset, skip)
    if as_zip:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"ImageNetS{subset}-0123456789abcdef.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel, data in sorted(files.items()):
                zf.writestr(f"ImageNetS{subset}/{rel}", data)
        return path
    base = root / f"ImageNetS{subset}"
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    return base


def add_unlisted_train(root: Path, tree: Tree) -> list[str]:
    """One image in each ImageNet-1k train folder that no ImageNet-S 919 class uses (train-full only)."""
    from datakit.imagenets.lists import imagenet_wnids

    used = {s for sources in load_lists(919).train_sources().values() for s in sources}
    added = [w for w in imagenet_wnids() if w not in used]
    for w in added:
        _write(root / "train" / w / f"{w}_1.JPEG", f"{w}_1.JPEG", "rgb", tree)
    return added
