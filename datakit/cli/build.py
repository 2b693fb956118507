"""Build commands: build (and its alias convert), demo, recipes. Parse, call one function, print.

(No ``from __future__ import annotations`` in the command modules: typer evaluates string
annotations for every command of every ``--help``; real annotations make start-up faster.)
"""


import dataclasses
import json
import os
import tomllib
from pathlib import Path
from typing import Any, List, Optional

import typer

from ..errors import BuildError, InputError
from .output import console, table

app = typer.Typer()


# options shared by `build` and `convert`
WORKERS = typer.Option(max(1, os.cpu_count() or 1), "--workers", "-w", help="Worker processes.")
SPLIT = typer.Option(None, "--split", help="Only these splits (repeatable).")
PARAM = typer.Option([], "--param", "-p", help="Any recipe parameter as key=value.")
SHARD_SIZE = typer.Option(1000, help="Samples per shard at most.")
SHARD_MB = typer.Option(1024, help="Estimated MB per shard at most.")
RESUME = typer.Option(False, "--resume", help="Keep finished shards, redo the rest (those whose inputs or settings changed). "
                     "--resume=content compares file contents instead of size and mtime.")
RESUME_CHECK = typer.Option("stat", "--resume-check", help="How --resume sees a changed input: stat (size+mtime) or content.")
FSYNC = typer.Option(False, "--fsync", help="fsync every shard, marker and folder: survives a power cut, costs speed.")
ORDER = typer.Option("permuted", "--order", help="permuted: records in a seeded random order (shards mix classes); "
                     "source: the dataset's own order.")
SEED = typer.Option(0, "--seed", help="Seed of the permuted record order.")
OVERWRITE = typer.Option(False, help="Rebuild: delete what earlier builds wrote in the output splits first "
                        "(refuses, naming it, if anything else is there).")
STRICT = typer.Option(False, help="A bad sample fails its shard task (and so the build) instead of being recorded.")
EXECUTOR = typer.Option("local", help="local or ray.")
ADDRESS = typer.Option(None, help="Ray cluster address (with --executor ray).")
SHARED_FS = typer.Option(False, "--shared-fs", help="With --address: --out is a file system mounted on every node.")
PROGRESS = typer.Option(True, help="Show a progress bar.")
AS_JSON = typer.Option(False, "--json", help="Print the report as JSON.")


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"-p expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def _common(values: dict[str, Any]) -> dict[str, Any]:
    """The build options among a command's arguments."""
    keys = ("workers", "shard_size", "shard_mb", "resume", "resume_check", "overwrite", "strict", "executor", "address",
            "progress", "shared_fs", "fsync", "order", "seed")
    return {k: values[k] for k in keys}


def _options(**kw: Any):
    from ..pipeline.build import BuildOptions

    kw["shard_bytes"] = kw.pop("shard_mb") << 20
    kw["ray_address"] = kw.pop("address")
    check = kw.pop("resume_check")
    kw["resume"] = check if kw["resume"] else ""
    return BuildOptions(**kw)


def print_build(report: Any) -> None:
    from ..pipeline.build import BuildReport

    if not isinstance(report, BuildReport):
        return
    out_table = table(title=f"{report.dataset} → {report.out}")
    for col in ("split", "samples", "shards", "MB", "resumed shards", "bad samples"):
        out_table.add_column(col, justify="right" if col != "split" else "left")
    for s in report.splits:
        bad = ", ".join(f"{k}: {v}" for k, v in s.failures.items()) or "0"
        out_table.add_row(s.split, f"{s.samples:,}", str(s.shards), f"{s.bytes / 1e6:,.1f}", str(s.skipped_shards), bad)
    console().print(out_table)
    for s in report.splits:
        for why in s.redone[:10]:
            console(stderr=True).print(f"redone {s.split}/{why}", soft_wrap=True)
        if len(s.redone) > 10:
            console(stderr=True).print(f"... and {len(s.redone) - 10} more shards of {s.split} redone")
    console().print(f"wrote {report.samples_written:,} samples in {report.seconds:.1f} s ({report.rate:,.0f} samples/s)")


def _run(recipe: str, out: str, overrides: dict[str, Any], opts: Any, as_json: bool) -> None:
    from ..pipeline.recipes import run_recipe

    try:
        result = run_recipe(recipe, out, overrides, opts)
    except BuildError as err:
        print_build(getattr(err, "report", None))
        raise
    if as_json:
        rep = result.report
        if hasattr(rep, "to_json"):
            obj = rep.to_json()
        elif dataclasses.is_dataclass(rep) and not isinstance(rep, type):
            obj = dataclasses.asdict(rep)
        else:
            obj = str(rep)
        print(json.dumps(obj, indent=1, default=str))
        return
    print_build(result.report)
    if result.summary:
        console().print(result.summary)


@app.command()
def build(
    recipe: str = typer.Argument(..., help="Recipe name (see `datakit recipes`) or a .toml file."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder or URL (s3://bucket/prefix)."),
    src: Optional[str] = typer.Option(None, help="Dataset root (converters)."),
    subset: Optional[str] = typer.Option(None, help="ImageNet-S subset: 50, 300, 919 or all."),
    imagenet: Optional[str] = typer.Option(None, help="ImageNet-1k root with train/ and val/."),
    annotations: Optional[str] = typer.Option(None, help="ImageNet-S annotation zip or folder."),
    fmt: Optional[str] = typer.Option(None, "--format", help="wds (shards) or folder (official layout)."),
    link: Optional[str] = typer.Option(None, help="folder format: symlink, hardlink or copy."),
    allow_missing: Optional[bool] = typer.Option(None, "--allow-missing", help="Warn about missing images instead of failing."),
    split: Optional[List[str]] = SPLIT,
    param: List[str] = PARAM,
    workers: int = WORKERS,
    shard_size: int = SHARD_SIZE,
    shard_mb: int = SHARD_MB,
    resume: bool = RESUME,
    resume_check: str = RESUME_CHECK,
    overwrite: bool = OVERWRITE,
    strict: bool = STRICT,
    executor: str = EXECUTOR,
    address: Optional[str] = ADDRESS,
    shared_fs: bool = SHARED_FS,
    fsync: bool = FSYNC,
    order: str = ORDER,
    seed: int = SEED,
    progress: bool = PROGRESS,
    as_json: bool = AS_JSON,
) -> None:
    """Build a dataset from its recipe into shards (or the official folder layout)."""
    overrides: dict[str, Any] = {"src": src, "subset": subset, "imagenet": imagenet, "annotations": annotations,
                                 "format": fmt, "link": link, "allow_missing": allow_missing, "splits": split or None}
    overrides.update(_parse_params(param))
    if isinstance(overrides.get("subset"), str) and overrides["subset"].isdigit():
        overrides["subset"] = int(overrides["subset"])
    _run(recipe, out, overrides, _options(**_common(locals())), as_json)


@app.command()
def convert(
    dataset: str = typer.Argument(..., help="Converter recipe (see `datakit recipes`): coco2017, ade150, voc2012..."),
    src: str = typer.Option(..., "--src", help="Dataset root."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder or URL (s3://bucket/prefix)."),
    split: Optional[List[str]] = SPLIT,
    param: List[str] = PARAM,
    workers: int = WORKERS,
    shard_size: int = SHARD_SIZE,
    shard_mb: int = SHARD_MB,
    resume: bool = RESUME,
    resume_check: str = RESUME_CHECK,
    overwrite: bool = OVERWRITE,
    strict: bool = STRICT,
    executor: str = EXECUTOR,
    address: Optional[str] = ADDRESS,
    shared_fs: bool = SHARED_FS,
    fsync: bool = FSYNC,
    order: str = ORDER,
    seed: int = SEED,
    progress: bool = PROGRESS,
    as_json: bool = AS_JSON,
) -> None:
    """Convert a dataset folder into shards (`datakit build DATASET --src DIR` with the converters' options only)."""
    overrides: dict[str, Any] = {"src": src, "splits": split or None}
    overrides.update(_parse_params(param))
    _run(dataset, out, overrides, _options(**_common(locals())), as_json)


@app.command()
def demo(out: str = typer.Option("demo-out", "--out", "-o", help="Output folder (rebuilt each run)."),
         workers: int = typer.Option(2, "--workers", "-w"),
         synthetic: int = typer.Option(200, help="Generated images in the synthetic split.")) -> None:
    """Build the embedded sample end to end, verify it and draw it."""
    from ..demo import run_demo

    result = run_demo(out, workers, synthetic)
    print_build(result.build)
    for rep in result.verify:
        state = "[green]verified[/green]" if rep.ok else f"[red]{len(rep.problems)} problems[/red]"
        console().print(f"{state} {rep.name}: {rep.shards} shards, {rep.samples} samples")
    out_path = Path(out).resolve()
    console().print(f"\nshards and indexes: {out_path}/<split>/ (index.json beside the .tar shards)")
    for p in result.pictures:
        console().print(f"picture: {p.resolve()}")
    console().print("next, one command per line:")
    for command in (f"datakit stats {out}", f"datakit verify {out}", f"datakit show {out}/voc --out voc.png"):
        console().print(f"  {command}", soft_wrap=True)
    if not all(r.ok for r in result.verify):
        raise typer.Exit(3)


@app.command()
def recipes() -> None:
    """List the packaged recipes."""
    from ..pipeline.recipes import list_recipes, load_recipe

    for name in list_recipes():
        r = load_recipe(name)
        console().print(f"[bold]{name}[/bold] ({r.source}): {r.description}")
