"""Inspection commands: verify, stats, show. Parse, call one function, print."""

from __future__ import annotations

import json
import os
from typing import Optional

import typer

from .output import console, table

app = typer.Typer()
WORKERS = typer.Option(max(1, os.cpu_count() or 1), "--workers", "-w", help="Worker processes.")


@app.command()
def verify(path: str = typer.Argument(..., help="Split folder, index.json or dataset root."),
           workers: int = WORKERS) -> None:
    """Re-read every shard: sizes, hashes, counts, member sets, full decode. Non-zero exit on any problem."""
    from ..shards.verify import verify as run_verify

    reports = run_verify(path, workers)
    bad = 0
    for rep in reports:
        if rep.ok:
            console().print(f"[green]ok[/green] {rep.name}: {rep.shards} shards, {rep.samples:,} samples")
        for problem in rep.problems[:20]:
            console(stderr=True).print(f"[red]bad[/red] {rep.name}: {problem}")
        bad += len(rep.problems)
    if bad:
        console(stderr=True).print(f"{bad} problem(s) found")
        raise typer.Exit(3)


@app.command()
def stats(path: str = typer.Argument(..., help="Split folder, index.json or dataset root."),
          as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
          top: int = typer.Option(20, help="Classes listed in the table."),
          workers: int = WORKERS) -> None:
    """Counts, bytes, image sizes and per-class pixel frequencies, read from the shards."""
    from ..inspect.stats import stats as run_stats

    results = [(ix, st.to_json(ix.spec.classes.names() if ix.spec.classes else {})) for ix, st in run_stats(path, workers)]
    if as_json:
        print(json.dumps([r for _, r in results], indent=1))
        return
    for _ix, r in results:
        console().print(f"[bold]{r['split']}[/bold]: {r['samples']:,} samples in {r['shards']} shards, {r['bytes'] / 1e6:,.1f} MB")
        if r["image_width"]:
            w, h = r["image_width"], r["image_height"]
            console().print(f"  image width {w['min']}..{w['median']}..{w['max']}, height {h['min']}..{h['median']}..{h['max']}; "
                          f"most common {', '.join(c['size'] for c in r['common_sizes'])}")
        if r["failures"]:
            console().print(f"  bad samples at build time: {r['failures']}")
        rows = sorted(r["class_pixels"], key=lambda c: -c["pixels"])[:top]
        if rows:
            rows_table = table("id", "class", "pixels", "fraction", "images")
            images = {c["id"]: c["images"] for c in r["class_images"]}
            for c in rows:
                rows_table.add_row(str(c["id"]), c["name"], f"{c['pixels']:,}", f"{c['fraction']:.4f}", str(images.get(c["id"], 0)))
            console().print(rows_table)
        elif r["class_images"]:
            console().print(f"  {len(r['class_images'])} classes with image-level labels")


@app.command()
def show(path: str = typer.Argument(..., help="Split folder, index.json or dataset root."),
         out: str = typer.Option("grid.png", "--out", "-o", help="PNG to write."),
         split: Optional[str] = typer.Option(None, help="Which split (default: the first)."),
         count: int = typer.Option(16, help="Samples drawn."),
         cols: int = typer.Option(4, help="Columns."),
         thumb: int = typer.Option(256, help="Tile size in pixels.")) -> None:
    """Draw a grid of samples with their masks overlaid and a class legend."""
    from ..inspect.show import GridOptions
    from ..inspect.show import show as run_show

    written = run_show(path, out, GridOptions(count=count, cols=cols, thumb=thumb), split)
    console().print(f"wrote {written}")
