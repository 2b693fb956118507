"""The parameters of ``datakit build imagenets``, validated once into a frozen dataclass.

Values may come from the recipe's TOML (typed) or from ``-p key=value`` (strings), so booleans,
the subset and the split list are accepted in both forms. Unknown keys are an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import InputError
from .lists import SPLITS, SUBSETS, parse_subset

FORMATS = ("wds", "folder")
LINKS = ("symlink", "hardlink", "copy")
KNOWN_KEYS = {"subset", "imagenet", "src", "annotations", "format", "link", "allow_missing", "splits"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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


def _bool(key: str, value: Any) -> bool:
    """A boolean from TOML or from a ``-p key=value`` string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise InputError(f"parameter {key}: expected true or false, got {value!r}")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of a fixed set of lower-case words."""
    text = str(value).strip().lower()
    if text not in choices:
        raise InputError(f"parameter {key}: {value!r} is not one of {', '.join(choices)}")
    return text


def _splits(value: Any) -> tuple[str, ...]:
    """The chosen base splits in canonical order; empty means all four."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    chosen = [str(s).strip() for s in items if str(s).strip()]
    if not chosen:
        return SPLITS
    unknown = sorted(set(chosen) - set(SPLITS))
    if unknown:
        raise InputError(f"parameter splits: unknown {unknown}; choose from {', '.join(SPLITS)}")
    return tuple(s for s in SPLITS if s in chosen)


def _imagenet(params: Mapping[str, Any]) -> str:
    """The absolute ImageNet root from ``imagenet`` (or the generic ``src``), which must exist."""
    values = {str(params[k]) for k in ("imagenet", "src") if params.get(k) not in (None, "")}
    if not values:
        raise InputError("imagenets needs the ImageNet-1k folder: --imagenet PATH (holding train/ and val/)")
    if len(values) > 1:
        raise InputError(f"imagenet and src name different folders: {sorted(values)}")
    path = os.path.abspath(os.path.expanduser(values.pop()))
    if not os.path.isdir(path):
        raise InputError(f"ImageNet folder not found: {path}")
    return path


def parse_params(params: Mapping[str, Any]) -> ImageNetSParams:
    """Validate recipe + command-line parameters (paths become absolute)."""
    unknown = sorted(set(params) - KNOWN_KEYS)
    if unknown:
        raise InputError(f"imagenets: unknown parameter(s) {unknown}; known: {', '.join(sorted(KNOWN_KEYS))}")
    subset = params.get("subset")
    if subset in (None, ""):
        raise InputError("imagenets needs --subset 50, 300, 919 or all")
    subsets = SUBSETS if str(subset).strip().lower() == "all" else (parse_subset(subset),)
    annotations = params.get("annotations")
    if annotations in (None, ""):
        annotations = None
    else:
        annotations = os.path.abspath(os.path.expanduser(str(annotations)))
        if not os.path.exists(annotations):
            raise InputError(f"annotations not found: {annotations}")
    return ImageNetSParams(
        subsets=subsets,
        imagenet=_imagenet(params),
        annotations=annotations,
        format=_choice("format", params.get("format", "wds"), FORMATS),
        link=_choice("link", params.get("link", "symlink"), LINKS),
        allow_missing=_bool("allow_missing", params.get("allow_missing", False)),
        splits=_splits(params.get("splits")),
    )
