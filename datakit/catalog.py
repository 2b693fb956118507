"""The packaged data: manifests (split and class lists, templates) and recipes.

In a wheel they live in ``datakit/_data/``; in a source checkout they are the top-level
``manifests/`` and ``recipes/`` folders. Everything else asks this module for paths.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import InputError

_PKG = Path(__file__).resolve().parent


def _root(name: str) -> Path:
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise InputError(f"datakit installation is missing its '{name}' folder (looked in {_PKG})")


def manifests_dir() -> Path:
    return _root("manifests")


def recipes_dir() -> Path:
    return _root("recipes")


def manifest(relpath: str) -> Path:
    """Path of one packaged manifest file, e.g. ``manifest('classes/coco80.txt')``."""
    path = manifests_dir() / relpath
    if not path.exists():
        raise InputError(f"no packaged manifest {relpath!r} (in {manifests_dir()})")
    return path


def read_lines(relpath: str) -> list[str]:
    """Non-empty stripped lines of a packaged text manifest (upstream files lack a final newline)."""
    text = manifest(relpath).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@lru_cache(maxsize=None)
def manifest_json(relpath: str) -> Any:
    """A JSON file shipped under ``manifests/``."""
    return json.loads(manifest(relpath).read_text(encoding="utf-8"))
