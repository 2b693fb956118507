"""Inspection commands: verify, stats, show, export. Parse, call one function, print."""


import json
import os
from typing import Optional

import typer

from .output import console, table

app = typer.Typer()
WORKERS = typer.Option(max(1, os.cpu_count() or 1), "--workers", "-w", help="Worker processes.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Progress bar on a terminal, status lines in batch logs.")


@app.command()
def verify(path: str = typer.Argument(..., help="Split folder, index.json or dataset root."),
           workers: int = WORKERS,
           progress: bool = PROGRESS) -> None:
    """Re-read every split: the index and markers against their digests, every file of the folder, and every
    shard's size, sha256, sample count, member names and set, a decode of every image and mask, the mask ids.
    Non-zero exit on any problem."""
    from ..shards.verify import verify as run_verify

    reports = run_verify(path, workers, progress)
    bad = 0
    for rep in reports:
        for note in rep.notes:
            console(stderr=True).print(f"note {rep.name}: {note}", soft_wrap=True)
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
          plot: Optional[str] = typer.Option(None, "--plot",
                                             help="Also draw a long-tail chart (pixels and images per class) to this PNG."),
          workers: int = WORKERS,
          progress: bool = PROGRESS) -> None:
    """Counts, bytes, image sizes, per-class pixel and image frequencies and the absent classes, read from the shards."""
    from ..inspect.stats import stats as run_stats
    from ..inspect.stats import stats_json

    records = stats_json(run_stats(path, workers, progress))
    if plot:
        from ..inspect.plot import long_tail_chart
        from ..io import atomic_write_bytes

        atomic_write_bytes(plot, long_tail_chart(records).png())
    if as_json:
        print(json.dumps(records, indent=1))
        return
    for r in records:
        _print_stats(r, top)
    if plot:
        console().print(f"wrote {plot}")


def _print_stats(r: dict, top: int) -> None:
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
    absent = r.get("absent_classes", [])
    if r.get("class_count"):
        listed = ", ".join(f"{c['id']} {c['name']}" for c in absent[:top])
        more = f" (+{len(absent) - top} more, see --json)" if len(absent) > top else ""
        console().print(f"  absent classes: {len(absent)} of {r['class_count']}" + (f": {listed}{more}" if absent else ""),
                        markup=False, highlight=False, soft_wrap=True)


@app.command()
def show(path: str = typer.Argument(..., help="Split folder, index.json or dataset root."),
         out: str = typer.Option("grid.png", "--out", "-o", help="PNG to write."),
         split: Optional[str] = typer.Option(None, help="Which split (default: the first)."),
         count: int = typer.Option(16, "--n", "--count", "-n", help="Samples drawn."),
         shuffle: bool = typer.Option(False, "--shuffle", help="A random draw (seeded by --seed) instead of the first samples."),
         seed: int = typer.Option(0, "--seed", help="Seed of --shuffle."),
         classes: Optional[list[str]] = typer.Option(
             None, "--classes", "-c", help="Only samples showing any of these classes (names or ids; repeat or comma-separate)."),
         mask: Optional[str] = typer.Option(None, "--mask", help="Mask member drawn (default: the split's first, e.g. seg.png)."),
         cols: int = typer.Option(4, help="Columns."),
         thumb: int = typer.Option(256, help="Tile size in pixels."),
         progress: bool = PROGRESS) -> None:
    """Draw a grid of samples with their masks overlaid (or their class name) and a class legend with the ignore id."""
    from ..inspect.show import GridOptions, draw

    opts = GridOptions(count=count, cols=cols, thumb=thumb, mask=mask, shuffle=shuffle, seed=seed,
                       classes=tuple(classes or ()), progress=progress)
    grid = draw(path, out, opts, split)
    console().print(f"wrote {out}: {len(grid.keys)} samples of {grid.split}, {len(grid.legend)} legend lines",
                    markup=False, highlight=False, soft_wrap=True)


@app.command()
def export(path: str = typer.Argument(..., help="Split folder, index.json or dataset root (every split)."),
           layout: str = typer.Option(..., "--layout", "-l", help="mmseg | detectron2 | imagefolder."),
           out: str = typer.Option(..., "--out", "-o", help="Folder to write (the framework's data root)."),
           split: Optional[list[str]] = typer.Option(None, "--split", help="Only these splits (repeatable)."),
           overwrite: bool = typer.Option(False, "--overwrite",
                                          help="Replace files this export writes that exist with other content."),
           workers: int = WORKERS,
           progress: bool = PROGRESS) -> None:
    """Write a split as the folders mmseg, detectron2 or torchvision read. Images are the stored JPEG bytes.

    \b
    mmseg: images/<split>/<key>.jpg + annotations/<split>/<key>.png (.tif when ids exceed 255);
      img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False, ignore_index = the split's ignore id.
      ade150: images|annotations/{training,validation}, raw 0..150 PNGs: ADE20KDataset, reduce_zero_label=True.
      ade847: annotations/{training,validation}/*.tif uint16, 65535 ignore (LarvSeg: int16=True, ignore -1).
      cocostuff171: images|annotations/{train2017,val2017}, seg_map_suffix='_labelTrainIds.png' (0..170, 255).
    detectron2: load_sem_seg(gt_root, image_root, gt_ext, image_ext), pairs by file stem:
      images/<split> + annotations_detectron2/<split> (gt_ext png, or tif); ignore_label = the ignore id.
      ade150: annotations_detectron2/{training,validation}/*.png (0..149, 255), ignore_label=255.
      ade847: images_detectron2/ + annotations_detectron2/{training,validation}/*.tif, uint16 TIFF as MaskFormer's
        prepare_ade20k_full_sem_seg.py; gt_ext='tif', image_ext='jpg', ignore_label=65535.
      cocostuff171: {train2017,val2017}/*.jpg + stuffthingmaps_detectron2/... (0..170, 255).
    imagefolder: <split>/<wnid or class name>/<key>.jpg for torchvision ImageFolder (image-level cls);
      <split>/<key>.jpg for unlabelled folders (PASS).
    datakit-export.json in --out lists each split's folders and the settings above. Reruns resume;
    existing files with other content are refused unless --overwrite; unsafe keys (.., /abs) are refused.
    """
    from ..export import ExportOptions
    from ..export import export as run_export

    report = run_export(path, out, ExportOptions(layout=layout, overwrite=overwrite, workers=workers,
                                                 progress=progress, splits=tuple(split or ())))
    for s in report.splits:
        console().print(f"{s.name} -> {report.out} ({report.layout}): {s.samples:,} samples, {s.written:,} files written, "
                        f"{s.kept:,} already there, {s.replaced:,} replaced, {s.skipped_shards} shards done before",
                        markup=False, highlight=False, soft_wrap=True)
