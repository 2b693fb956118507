"""Recipes: one small TOML file per dataset build, naming a source module and its parameters.

``recipes/coco2017.toml``::

    name = "coco2017"
    description = "COCO-2017 semantic, 80 things + background"
    source = "coco"            # the module datakit.sources.coco, which defines make_source(params)
    [params]
    kind = "semantic80"

Command-line values override ``[params]``. A source module may also define
``export(params, out, opts)`` for non-shard outputs (``--format folder``) and
``report(build_report, params) -> str`` for a post-build summary.
"""

from __future__ import annotations

import difflib
import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..catalog import recipes_dir
from ..errors import InputError

# source names whose module is not datakit.sources.<name>
SOURCE_MODULES = {"imagenets": "datakit.imagenets.source"}


def source_module(name: str) -> str:
    return SOURCE_MODULES.get(name, f"datakit.sources.{name}")


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def module(self) -> ModuleType:
        path = source_module(self.source)
        try:
            module = importlib.import_module(path)
        except ModuleNotFoundError as err:
            raise InputError(f"recipe {self.name}: no source module {self.source!r} ({err})") from None
        if not callable(getattr(module, "make_source", None)):
            raise InputError(f"recipe {self.name}: {path} has no make_source(params)")
        return module

    def merged(self, overrides: dict[str, Any]) -> dict[str, Any]:
        params = dict(self.params)
        params.update({k: v for k, v in overrides.items() if v is not None})
        return params


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.toml"))


def load_recipe(name_or_path: str) -> Recipe:
    """A packaged recipe by name (``imagenets``) or any ``.toml`` file by path."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.exists()):
        path = recipes_dir() / f"{name_or_path}.toml"
    if not path.exists():
        known = list_recipes()
        close = difflib.get_close_matches(str(name_or_path), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(f"unknown recipe {name_or_path!r}; {hint}available: {', '.join(known)}")
    try:
        obj = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: invalid TOML ({err})") from None
    unknown = set(obj) - {"name", "source", "description", "params"}
    if unknown or "source" not in obj:
        raise InputError(f"{path}: a recipe needs 'source' and may have name/description/params; unexpected {sorted(unknown)}")
    return Recipe(obj.get("name", path.stem), obj["source"], obj.get("description", ""), dict(obj.get("params", {})), str(path))


def make_source(recipe: Recipe, overrides: dict[str, Any]):
    module = recipe.module()
    return module.make_source(recipe.merged(overrides))


@dataclass
class RecipeResult:
    """What ``run_recipe`` did: the build report (shard output) or the export's own result, and a summary."""

    recipe: Recipe
    params: dict[str, Any]
    report: Any
    summary: str = ""


def run_recipe(name_or_path: str, out: str, overrides: dict[str, Any], opts: Any) -> RecipeResult:
    """Build a recipe: shards through ``datakit.pipeline.build``, or the source module's ``export`` hook
    when ``format`` is not ``wds``; then the module's ``report`` hook, if any, writes a summary."""
    from .build import build

    recipe = load_recipe(name_or_path)
    module = recipe.module()
    params = recipe.merged(overrides)
    fmt = params.get("format", "wds")
    if fmt == "wds":
        source = module.make_source({k: v for k, v in params.items() if k != "format"})
        wanted = list(params.get("splits") or [])
        # a source may apply `splits` itself under other names (ImageNet-S `--subset all`: s50-test...)
        splits = wanted if wanted and set(wanted) <= set(source.splits()) else None
        report = build(source, out, splits, opts)
    elif hasattr(module, "export"):
        report = module.export(params, out, opts)
    else:
        raise InputError(f"recipe {recipe.name} writes only shards; format {fmt!r} is not supported")
    summary = module.report(report, params) if hasattr(module, "report") else ""
    return RecipeResult(recipe, params, report, summary)
