"""The official ImageNet-S lists (categories, val/test mappings, train-semi names), parsed once.

Everything comes from ``manifests/imagenets/`` (a byte copy of LUSSeg/ImageNet-S ``data/``).
Class ids are per subset: 0 = other, i = the i-th wnid of the sorted category file, 1000 = ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping

from ..catalog import read_lines
from ..errors import InputError
from ..shards.spec import ClassEntry, ClassTable

SUBSETS = (50, 300, 919)
SPLITS = ("train", "train-semi", "validation", "test")
OTHER_ID = 0
IGNORE_ID = 1000

# Published image counts per split (ImageNet-S paper / repository README).
PUBLISHED: dict[int, dict[str, int]] = {
    50: {"train": 64431, "train-semi": 500, "validation": 752, "test": 1682},
    300: {"train": 384862, "train-semi": 3000, "validation": 4097, "test": 9088},
    919: {"train": 1183322, "train-semi": 9190, "validation": 12419, "test": 27423},
}
IMAGENET_TRAIN_TOTAL = 1281167  # train-full of S919 is the whole ImageNet-1k train set

# Names that occur twice in the official class strings; user-facing tables tell them apart.
_DISAMBIGUATED = {
    "n02012849": "crane (bird)",
    "n03126707": "crane (machine)",
    "n02113186": "Cardigan Welsh corgi",
    "n02963159": "cardigan (sweater)",
}


def mask_name(image_name: str) -> str:
    """The mask file name of an image: its name with ``.png``."""
    return image_name.rsplit(".", 1)[0] + ".png"


@dataclass(frozen=True)
class ValEntry:
    """One ImageNet val image of a validation/test split: ``label`` is its ImageNet val label."""

    name: str
    wnid: str
    label: str

    @property
    def mask_name(self) -> str:
        return mask_name(self.name)


@dataclass(frozen=True)
class SemiEntry:
    """One annotated train image: it lives in ``train/<source_wnid>/`` and belongs to ``wnid``."""

    name: str
    wnid: str
    source_wnid: str

    @property
    def mask_name(self) -> str:
        return mask_name(self.name)


@dataclass(frozen=True)
class SubsetLists:
    """All the lists of one subset, with the class table derived from them."""

    subset: int
    wnids: tuple[str, ...]
    names: tuple[str, ...]
    official_names: tuple[str, ...]
    validation: tuple[ValEntry, ...]
    test: tuple[ValEntry, ...]
    semi: tuple[SemiEntry, ...]
    merges: Mapping[str, str] = field(default_factory=dict)

    def class_id(self, wnid: str) -> int:
        """The id of a class wnid in this subset (1..N)."""
        return _index(self.subset)[wnid]

    def class_table(self) -> ClassTable:
        """``other`` at 0, the classes at 1..N (wnid in ``extra``), ignore id 1000."""
        entries = [ClassEntry(OTHER_ID, "other", {"description": "not one of the subset's classes"})]
        for i, (wnid, name, official) in enumerate(zip(self.wnids, self.names, self.official_names), 1):
            extra = {"wnid": wnid} if name == official else {"wnid": wnid, "official_name": official}
            entries.append(ClassEntry(i, name, extra))
        return ClassTable(tuple(entries), IGNORE_ID)

    def train_sources(self) -> dict[str, tuple[str, ...]]:
        """For each class wnid, the ImageNet train folders whose images it takes (the 919 merges)."""
        out = {w: [w] for w in self.wnids}
        for source, target in sorted(self.merges.items()):
            out[target].append(source)
        return {w: tuple(v) for w, v in out.items()}


def parse_subset(value: object) -> int:
    """50, 300 or 919 from an int or a string (``"300"``, ``"s300"``, ``"ImageNetS300"``)."""
    text = str(value).strip().lower().removeprefix("imagenets").removeprefix("s")
    if text.isdigit() and int(text) in SUBSETS:
        return int(text)
    raise InputError(f"unknown ImageNet-S subset {value!r}; choose 50, 300, 919 (or all)")


def _pairs(relpath: str) -> list[tuple[str, str]]:
    """The two path columns of a mapping or names file."""
    rows = []
    for line in read_lines(relpath):
        cols = line.split()
        if len(cols) != 2 or cols[0].count("/") != 1 or cols[1].count("/") != 1:
            raise InputError(f"manifest {relpath}: malformed line {line!r}")
        rows.append((cols[0], cols[1]))
    return rows


def _val_entries(subset: int, split: str, known: set[str]) -> tuple[ValEntry, ...]:
    """Validation or test entries from the mapping file, checked for consistent names and classes."""
    relpath = f"imagenets/mapping/ImageNetS_im{subset}_mapping_{split}.txt"
    out = []
    for src, dst in _pairs(relpath):
        label, name = src.split("/")
        wnid, dst_name = dst.split("/")
        if name != dst_name or wnid not in known:
            raise InputError(f"manifest {relpath}: inconsistent line {src} {dst}")
        out.append(ValEntry(name, wnid, label))
    return tuple(out)


def _semi_entries(subset: int, known: set[str], merges: Mapping[str, str]) -> tuple[SemiEntry, ...]:
    """train-semi entries; the source folder is the file-name prefix (a merged wnid in 919)."""
    relpath = f"imagenets/names/ImageNetSemi_im{subset}_train.txt"
    out = []
    for image, _mask in _pairs(relpath):
        wnid, name = image.split("/")
        source = name.split("_")[0]
        if wnid not in known or (source != wnid and merges.get(source) != wnid):
            raise InputError(f"manifest {relpath}: inconsistent line {image}")
        out.append(SemiEntry(name, wnid, source))
    return tuple(out)


def _class_names(subset: int, wnids: tuple[str, ...]) -> tuple[str, ...]:
    """The official class names, checked to line up with the sorted wnids."""
    relpath = f"imagenets/derived/imagenets{subset}_classes.tsv"
    by_id: dict[int, tuple[str, str]] = {}
    for line in read_lines(relpath)[1:]:
        cols = line.split("\t")
        if len(cols) == 3 and cols[0].isdigit():
            by_id[int(cols[0])] = (cols[1], cols[2])
    names = []
    for i, wnid in enumerate(wnids, 1):
        if by_id.get(i, ("", ""))[0] != wnid:
            raise InputError(f"manifest {relpath}: id {i} is not {wnid}")
        names.append(by_id[i][1])
    return tuple(names)


@lru_cache(maxsize=None)
def merges() -> dict[str, str]:
    """The five ImageNet wnids whose train images join an S919 class (source -> target)."""
    rows = read_lines("imagenets/derived/imagenets919_merged_wnids.tsv")[1:]
    return dict(tuple(r.split("\t")) for r in rows)  # type: ignore[misc]


@lru_cache(maxsize=None)
def load_lists(subset: int) -> SubsetLists:
    """Parse and cross-check the lists of one subset (cached: the manifests never change)."""
    wnids = tuple(read_lines(f"imagenets/categories/ImageNetS_categories_im{subset}.txt"))
    if len(wnids) != subset or list(wnids) != sorted(set(wnids)):
        raise InputError(f"manifest categories of S{subset}: expected {subset} sorted unique wnids")
    known = set(wnids)
    merged = merges() if subset == 919 else {}
    official = _class_names(subset, wnids)
    names = tuple(_DISAMBIGUATED.get(w, n) for w, n in zip(wnids, official))
    return SubsetLists(
        subset, wnids, names, official,
        _val_entries(subset, "validation", known), _val_entries(subset, "test", known),
        _semi_entries(subset, known, merged), merged,
    )


@lru_cache(maxsize=None)
def _index(subset: int) -> dict[str, int]:
    """wnid -> class id of a subset."""
    return {w: i for i, w in enumerate(load_lists(subset).wnids, 1)}


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids: S919 classes + merged sources + the excluded ones, sorted."""
    lists = load_lists(919)
    excluded = read_lines("imagenets/derived/imagenet1k_wnids_not_in_imagenets919.txt")
    return tuple(sorted(set(lists.wnids) | set(lists.merges) | set(excluded)))
