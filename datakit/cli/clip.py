"""``datakit index ...`` and ``datakit retrieve``: parse options, call the library, print a summary."""


from pathlib import Path
from typing import Any, List, Optional

import typer
from typer.core import TyperGroup

from ..errors import InputError


class _DefaultBuild(TyperGroup):
    """``datakit index SOURCE... --out DIR`` means ``datakit index build SOURCE... --out DIR``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """Insert ``build`` when the first argument is not a sub-command."""
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["build", *args]
        return super().parse_args(ctx, args)


index_app = typer.Typer(cls=_DefaultBuild, no_args_is_help=True, add_completion=False,
                        help="Embed images into a CLIP index (default command: build), merge rank parts, import ZUTIS pickles.")


def _pretrained(value: Optional[str]) -> Optional[str]:
    """'none'/'random' mean random weights."""
    return None if value is None or value.lower() in ("none", "random") else value


def _model_spec(model: str, pretrained: Optional[str], preprocess_tag: Optional[str], cache_dir: Optional[str]) -> Any:
    """A ModelSpec from CLI options."""
    from ..clip.model import ModelSpec

    return ModelSpec(model, _pretrained(pretrained), cache_dir, preprocess_tag)


def _print_index(report: Any) -> None:
    """Print an index run's notes and counts."""
    for note in report.notes:
        typer.echo(f"note: {note}")
    rate = f", {report.rate:,.1f} images/s" if report.images and report.seconds else ""
    typer.echo(f"rank {report.rank}/{report.world_size}: {report.parts_written} part(s) written, "
               f"{report.parts_skipped} already done, "
               f"{report.parts_other_ranks} left to other ranks; {report.images} images{rate}; {report.failed} failed "
               f"[{report.device} {report.precision}]")
    if report.manifest:
        m = report.manifest
        typer.echo(f"index complete: {report.out} — {m['count']} images, dim {m['dim']}, model {m['model']['name']} / "
                   f"{m['model']['pretrained']}")


@index_app.command("build")
def build_cmd(
    sources: List[str] = typer.Argument(..., help="[NAME=]PATH: ImageNet train folder, PASS/plain image folder, "
                                        "or datakit shards"),
    out: Path = typer.Option(..., "--out", "-o", help="index folder (rerun the same command to resume)"),
    model: str = typer.Option("ViT-L-14-336-quickgelu", help="open_clip model name (OpenAI names like ViT-L/14@336px accepted)"),
    pretrained: Optional[str] = typer.Option("openai", help="tag, local checkpoint file, or folder; 'none' = random weights"),
    preprocess_tag: Optional[str] = typer.Option(None, help="take preprocessing from this tag when --pretrained is a bare file"),
    cache_dir: Optional[str] = typer.Option(None, help="open_clip download cache"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    precision: str = typer.Option("auto", help="auto (fp16 on GPU, fp32 on CPU) | fp16 | bf16 | fp32"),
    batch_size: int = typer.Option(0, help="0: 256 on GPU, 32 on CPU"),
    workers: int = typer.Option(-1, help="decode/preprocess workers (-1: CPU count - 1, up to 16)"),
    part_size: int = typer.Option(10_000, help="images per part file (folders; shards give one part each)"),
    overwrite: bool = typer.Option(False, help="delete this folder's index files and start again"),
    progress: bool = typer.Option(True, help="show a progress bar"),
    decode: str = typer.Option("pil", help="pil (exactly as ZUTIS) | pil-draft (large JPEGs decoded at reduced scale: "
                               "faster, slightly different pixels)"),
    executor: str = typer.Option("local", help="local (this process / torchrun rank) or ray (one actor per GPU)"),
    actors: int = typer.Option(1, help="with --executor ray: ranks to run as Ray actors (one per GPU)"),
    address: Optional[str] = typer.Option(None, help="with --executor ray: cluster address (default: a local Ray)"),
) -> None:
    """Embed images; each torchrun rank (or Ray actor) takes its share of parts, the last one writes the manifest."""
    from ..clip.embed import IndexOptions, build_index
    from ..clip.images import parse_input

    opts = IndexOptions(_model_spec(model, pretrained, preprocess_tag, cache_dir), device, precision, batch_size,
                        workers, part_size, overwrite=overwrite, progress=progress, decode=decode)
    inputs = [parse_input(s) for s in sources]
    if executor == "ray":
        from ..clip.ray_index import build_index_on_ray

        for report in build_index_on_ray(inputs, out, opts, actors, address=address):
            _print_index(report)
    elif executor == "local":
        _print_index(build_index(inputs, out, opts))
    else:
        raise InputError(f"unknown executor {executor!r}; choose local or ray")


@index_app.command("merge")
def merge_cmd(
    dirs: List[Path] = typer.Argument(..., help="index folders written by the ranks (or one shared folder)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="merged index folder (default: the first folder)"),
) -> None:
    """Gather the parts of several rank folders into one complete index."""
    from ..clip.embed import merge_indexes

    report = merge_indexes(dirs, out or dirs[0])
    m = report.manifest or {}
    typer.echo(f"merged {report.parts_written} part(s) ({report.parts_skipped} already there) into {report.out}: "
               f"{m.get('count', 0)} images")


@index_app.command("import-zutis")
def import_zutis_cmd(
    pkl: Path = typer.Argument(..., help="ZUTIS's filename_to_ViT_L_14_336px_*img_embedding.pkl"),
    out: Path = typer.Option(..., "--out", "-o", help="index folder to write"),
    source: Optional[str] = typer.Option(None, help="source name (default: imagenet or pass, from the file names)"),
    image_root: Optional[str] = typer.Option(None, help="where the images are, e.g. /data/ImageNet2012/train"),
    model: str = typer.Option("ViT-L-14-336-quickgelu", help="model that made the embeddings"),
    pretrained: str = typer.Option("openai", help="its weights tag ('none' for random weights)"),
    part_size: int = typer.Option(100_000, help="rows per part file"),
    overwrite: bool = typer.Option(False, help="replace an existing index in --out"),
) -> None:
    """Convert ZUTIS's published embedding pickle into a datakit index (no recomputation)."""
    from ..clip.zutis_import import ImportOptions, import_zutis

    report = import_zutis(pkl, out, ImportOptions(source, image_root, model, _pretrained(pretrained), part_size, overwrite))
    m = report.manifest or {}
    typer.echo(f"imported {m.get('count', 0)} embeddings (dim {m.get('dim')}) into {report.out} "
               f"as source {m.get('sources', [{}])[0].get('name')}")


@index_app.command("info")
def info_cmd(index: Path = typer.Argument(..., help="index folder")) -> None:
    """Print an index's model, size and sources."""
    from ..clip.store import ClipIndex

    m = ClipIndex(index).manifest
    typer.echo(f"{index}: {m['count']} images, dim {m['dim']}, {len(m['parts'])} parts, {m['failed']} failed")
    typer.echo(f"model: {m['model']['name']} / {m['model']['pretrained']}  preprocess: {m['model']['preprocess']}")
    for s in m["sources"]:
        typer.echo(f"source {s['name']} ({s['kind']}): {s['count']} images from {s.get('root')}")


def _path_roots(values: List[str]) -> tuple[tuple[str, str], ...]:
    """Parse repeated SOURCE=DIR options."""
    pairs = []
    for v in values:
        name, sep, root = v.partition("=")
        if not sep or not name or not root:
            raise InputError(f"--path-root takes SOURCE=DIR, got {v!r}")
        pairs.append((name, root))
    return tuple(pairs)


def retrieve_cmd(
    categories: str = typer.Option("coco80", help="coco80 | coca80 | voc20 | ade150 | ade847 | cocostuff171 | "
                                   "imagenets50 | imagenets300 | imagenets919 | FILE"),
    index: List[Path] = typer.Option(..., "--index", "-i", help="index folder; repeat to pool (ImageNet + PASS)"),
    n: int = typer.Option(500, "--n", help="images per category"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder"),
    templates: Optional[str] = typer.Option(None, help="prompt template file (default: ZUTIS's 85)"),
    path_root: List[str] = typer.Option([], help="SOURCE=DIR: write paths under DIR (e.g. imagenet=/data/ImageNet2012/train)"),
    dedup: str = typer.Option("none", help="none (ZUTIS: an image may be in several lists) | best (one category per image)"),
    show: bool = typer.Option(False, help="write contact sheets (sheets/*.png)"),
    show_n: int = typer.Option(25, help="images per contact sheet"),
    shards: Optional[Path] = typer.Option(None, help="also write the retrieved images as labelled shards here"),
    model: Optional[str] = typer.Option(None, help="text model (default: the index's)"),
    pretrained: Optional[str] = typer.Option(None, help="text model weights: tag, file or folder (default: the index's)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (text model and search)"),
    search: str = typer.Option("exact", help="exact | faiss-flat | faiss-ivf (approximate)"),
    backend: str = typer.Option("auto", help="exact search backend: auto (torch) | torch | numpy"),
    workers: int = typer.Option(1, help="workers for --shards"),
    overwrite: bool = typer.Option(False, help="replace an existing --shards output"),
    text_cache: Optional[str] = typer.Option(None, help="folder caching category text embeddings (default: "
                                             "$DATAKIT_CACHE_DIR or ~/.cache/datakit); 'none' turns it off"),
    progress: bool = typer.Option(True, help="show progress (status lines when not on a terminal)"),
) -> None:
    """Top-N images per category by prompt-ensembled CLIP similarity, as ZUTIS's category_to_p_images."""
    from ..clip.model import ModelSpec
    from ..clip.retrieve import RetrieveOptions, retrieve
    from ..clip.store import ClipIndex
    from ..clip.topk import SearchOptions

    spec = None
    if model or pretrained:
        recorded = ClipIndex(index[0]).identity
        spec = ModelSpec(model or recorded["name"], _pretrained(pretrained) if pretrained else recorded["pretrained"])
    opts = RetrieveOptions(categories, n, templates, spec, device, SearchOptions(search, backend, device), dedup,
                           path_roots=_path_roots(path_root), show=show_n if show else 0,
                           shards=str(shards) if shards else None, workers=workers, overwrite=overwrite,
                           text_cache=text_cache, progress=progress)
    res = retrieve(index, out, opts)
    r = res.report
    for note in res.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"{r['categories']} categories x top-{r['n']} from {r['pooled_images']} images: text {res.seconds_text:.1f}s "
               f"({'from the cache' if res.text_from == 'cache' else 'encoded'}), search {res.seconds_search:.1f}s")
    typer.echo(f"{r['unique_images']} unique images; {r['images_in_several_categories']} retrieved by several categories "
               f"(dedup={r['dedup']})")
    typer.echo(f"wrote {res.json_path}, {res.parquet_path}, {Path(res.out) / 'report.md'}")
    if res.sheets:
        typer.echo(f"contact sheets: {len(res.sheets)} in {Path(res.out) / 'sheets'}")
    if res.shards is not None:
        typer.echo(f"shards: {res.shards.samples_written} images in {opts.shards}")


app = typer.Typer()
app.add_typer(index_app, name="index")
app.command("retrieve")(retrieve_cmd)
