"""The parameters of ``datakit build imagenets``, validated once into a frozen dataclass.

Values may come from the recipe's TOML (typed) or from ``-p key=value`` (strings), so booleans,
the subset and the split list are accepted in both forms. Unknown keys are an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from ..errors import InputError
from ..sources.params import parse_params as parse_options
from .lists import SPLITS, SUBSETS, parse_subset

FORMATS = ("wds", "folder")
LINKS = ("symlink", "hardlink", "copy")


@dataclass(frozen=True)
class ImageNetSParams:
    """``subsets`` has one entry, or all three for ``subset = "all"`` (then split names get an
    ``s<N>-`` prefix so the three subsets can share one output folder)."""

    subsets: tuple[int, ...]
    imagenet: str
    annotations: str | None = None
    format: str = "wds"
    link: str = "symlink"
    allow_missing: bool = False
    splits: tuple[str, ...] = SPLITS

    @property
    def combined(self) -> bool:
        """True when several subsets share one output (split names get a prefix)."""
        return len(self.subsets) > 1

    def split_names(self) -> list[str]:
        """Every output split name, subset by subset."""
        return [split_name(n, s, self.combined) for n in self.subsets for s in self.splits]


def split_name(subset: int, split: str, combined: bool) -> str:
    """The output folder name of a split: ``test`` alone, ``s300-test`` when subsets share an output."""
    return f"s{subset}-{split}" if combined else split


def parse_split_name(name: str, subsets: tuple[int, ...]) -> tuple[int, str]:
    """Inverse of ``split_name``: (subset, base split)."""
    if len(subsets) == 1 and name in SPLITS:
        return subsets[0], name
    head, _, base = name.partition("-")
    if head.startswith("s") and head[1:].isdigit() and int(head[1:]) in subsets and base in SPLITS:
        return int(head[1:]), base
    raise InputError(f"imagenets has no split {name!r}")


@dataclass(frozen=True)
class ImageNetSOptions:
    """The parameters as given (recipe TOML or ``-p key=value``), checked by the one params parser."""

    subset: str = ""
    imagenet: str = ""
    src: str = ""
    annotations: str = ""
    format: str = "wds"
    link: str = "symlink"
    allow_missing: bool = False
    splits: tuple[str, ...] = ()

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"format": FORMATS, "link": LINKS, "splits": SPLITS}
    REQUIRED: ClassVar[dict[str, str]] = {"subset": "imagenets needs --subset 50, 300, 919 or all"}


def _imagenet(opts: ImageNetSOptions) -> str:
    """The absolute ImageNet root from ``imagenet`` (or the generic ``src``), which must exist."""
    values = {v for v in (opts.imagenet, opts.src) if v}
    if not values:
        raise InputError("imagenets needs the ImageNet-1k folder: --imagenet PATH (holding train/ and val/)")
    if len(values) > 1:
        raise InputError(f"imagenet and src name different folders: {sorted(values)}")
    path = os.path.abspath(os.path.expanduser(values.pop()))
    if os.path.isfile(path):
        raise InputError(f"--imagenet {path} is a file; give the ImageNet-1k folder (holding train/ and val/)")
    if not os.path.isdir(path):
        raise InputError(f"ImageNet folder not found: {path}")
    return path


def _annotations(value: str) -> str | None:
    if not value:
        return None
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.exists(path):
        raise InputError(f"annotations not found: {path}")
    return path


def parse_imagenets_params(params: Mapping[str, Any]) -> ImageNetSParams:
    """Validate recipe + command-line parameters (paths become absolute, splits canonical order)."""
    opts = parse_options(ImageNetSOptions, {k: v for k, v in params.items() if v not in (None, "")}, "imagenets")
    subsets = SUBSETS if opts.subset.strip().lower() == "all" else (parse_subset(opts.subset),)
    return ImageNetSParams(
        subsets=subsets,
        imagenet=_imagenet(opts),
        annotations=_annotations(opts.annotations),
        format=opts.format,
        link=opts.link,
        allow_missing=opts.allow_missing,
        splits=tuple(s for s in SPLITS if s in opts.splits) if opts.splits else SPLITS,
    )
