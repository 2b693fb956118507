"""The one parameter-validation path for every source: recipe TOML values and ``-p key=value`` strings
become a frozen, typed params dataclass, or one InputError line.

A params class declares its fields with types (``str``, ``int``, ``bool``, ``tuple[str, ...]``),
optionally ``CHOICES`` (allowed values per field) and ``REQUIRED`` (fields that must be non-empty,
with the hint to show), and does any cross-field check in ``__post_init__`` by raising InputError.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Mapping, Sequence, TypeVar

from ..errors import InputError
from ..io.urls import is_remote, local_path

T = TypeVar("T")
# other spellings of a split: outputs say train/val, ADE's folders training/validation, ImageNet-S validation
SPLIT_ALIASES = {"val": "validation", "validation": "val", "train": "training", "training": "train"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise InputError(f"{where}: expected true/false, got {value!r}")


def _coerce_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"{where}: expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected an integer, got {value!r}") from None


def _coerce_str(value: Any, where: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise InputError(f"{where}: expected text, got {value!r}")
    return str(value)


def _coerce_tuple(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, (str, int)):
        items: Sequence[Any] = str(value).split(",")
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise InputError(f"{where}: expected a list, got {value!r}")
    return tuple(str(v).strip() for v in items if str(v).strip())


def coerce(value: Any, kind: Any, where: str) -> Any:
    """A TOML value or a command-line string as the field's declared type."""
    if kind is bool:
        return _coerce_bool(value, where)
    if kind is int:
        return _coerce_int(value, where)
    if kind is str:
        return _coerce_str(value, where)
    if typing.get_origin(kind) is tuple:
        return _coerce_tuple(value, where)
    raise TypeError(f"unsupported param type {kind!r}")  # a bug in a params class, not bad input


def split_alias(split: str, available: Sequence[str]) -> str:
    """``split``, or its other spelling (val/validation, train/training) when only that one is available."""
    if split not in available and SPLIT_ALIASES.get(split) in available:
        return SPLIT_ALIASES[split]
    return split


def _check_choices(cls: type, values: dict[str, Any], where: str) -> None:
    choices: Mapping[str, Sequence[str]] = getattr(cls, "CHOICES", {})
    if isinstance(values.get("splits"), tuple) and "splits" in choices:
        values["splits"] = tuple(split_alias(s, choices["splits"]) for s in values["splits"])
    for name, allowed in choices.items():
        if name not in values:
            continue
        given = values[name] if isinstance(values[name], tuple) else (values[name],)
        bad = [v for v in given if v not in allowed]
        if bad:
            shown = ",".join(values[name]) if isinstance(values[name], tuple) else values[name]
            raise InputError(f"{where}: {name}={shown!r} is not one of {list(allowed)}")


def _check_src(src: Any, where: str) -> None:
    """A local dataset root must be a folder that exists (said before any source looks inside it)."""
    if not src or is_remote(str(src)):
        return
    path = local_path(str(src))
    if not os.path.exists(path):
        raise InputError(f"{where}: --src {src}: folder not found")
    if not os.path.isdir(path):
        raise InputError(f"{where}: --src {src} is a file; give the dataset's root folder")


def parse_params(cls: type[T], params: Mapping[str, Any], where: str) -> T:
    """Build the frozen params dataclass ``cls`` from ``params``; unknown keys, bad types, bad choices
    and missing required values raise InputError naming the parameter."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise InputError(f"{where}: unknown parameter(s) {unknown}; accepted: {sorted(fields)}")
    values = {name: coerce(given[name], hints[name], f"{where}: {name}") for name in fields if name in given}
    _check_choices(cls, values, where)
    _check_src(values.get("src"), where)
    required: Mapping[str, str] = getattr(cls, "REQUIRED", {})
    for name, hint in required.items():
        if not str(values.get(name, "")).strip():
            raise InputError(f"{where}: {hint}")
    return cls(**values)
