"""The shipped training configs (``configs/*.toml``; in a wheel ``datakit/_data/configs``): each reproduces
a seed paper's training row and says where it comes from in its ``source`` line."""

from __future__ import annotations

from pathlib import Path

from .. import catalog
from ..errors import InputError


def configs_dir() -> Path:
    """The folder of shipped configs (source checkout or installed wheel)."""
    return catalog._root("configs")


def list_configs() -> list[tuple[str, str]]:
    """(name, source) of every shipped config, sorted by name."""
    from .config import read_mapping

    return [(p.stem, str(read_mapping(p).get("source", ""))) for p in sorted(configs_dir().glob("*.toml"))]


def resolve_config(name: str) -> str:
    """A config file path as given, or the shipped config of that name (with or without ``.toml``)."""
    if Path(name).is_file():
        return name
    stem = name.removesuffix(".toml")
    shipped = configs_dir() / f"{stem}.toml" if "/" not in stem and "\\" not in stem else None
    if shipped is not None and shipped.is_file():
        return str(shipped)
    known = ", ".join(n for n, _ in list_configs())
    raise InputError(f"config file not found: {name} (shipped configs: {known})")
