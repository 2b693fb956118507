"""``datakit info imagenets`` and ``datakit submit imagenets``: parse options, call the library, print.

(``datakit build imagenets`` is the generic recipe command; ``eval``/``match`` live in the
evaluation commands.)
"""


from typing import Optional

import typer

info_app = typer.Typer(help="Describe a dataset: classes, splits, caveats.", no_args_is_help=True)
submit_app = typer.Typer(help="Package test-set predictions for an evaluation server.", no_args_is_help=True)


@info_app.command("imagenets")
def info_imagenets(
    subset: str = typer.Option(..., "--subset", help="50, 300 or 919"),
    classes: bool = typer.Option(True, "--classes/--no-classes", help="print the class table"),
) -> None:
    """ImageNet-S class table (id, wnid, name, images per split) and cross-subset overlaps."""
    from ..imagenets.info import format_info, subset_info
    from ..imagenets.lists import parse_subset

    typer.echo(format_info(subset_info(parse_subset(subset)), classes=classes))


@submit_app.command("imagenets")
def submit_imagenets(
    pred: str = typer.Option(..., "--pred", help="prediction root: <wnid>/<ILSVRC2012_val_X>.png, RGB id = R + 256*G"),
    subset: str = typer.Option(..., "--subset", help="50, 300 or 919"),
    images: str = typer.Option(..., "--images", help="the test images, for their sizes: built shards, an "
                                                      "ImageNetS{N} folder, or the ImageNet copy (val/)"),
    out: str = typer.Option(..., "--out", help="the zip to write"),
    method: str = typer.Option("example submission", "--method", help="method name"),
    arch: str = typer.Option("null", "--arch", help="networks used"),
    train_data: str = typer.Option("null", "--train-data", help="training data"),
    train_scheme: str = typer.Option("null", "--train-scheme", help="training scheme"),
    link: str = typer.Option("null", "--link", help="paper or project link"),
    description: str = typer.Option("null", "--description", help="method description"),
    match: Optional[str] = typer.Option(None, "--match", help="match.json of the fully unsupervised protocol"),
) -> None:
    """Check every test prediction (present, RGB PNG, image size) and write the submission zip."""
    from ..imagenets.lists import parse_subset
    from ..imagenets.submit import MethodInfo, write_submission

    info = MethodInfo(method, train_data, train_scheme, arch, link, description)
    rep = write_submission(pred, parse_subset(subset), images, out, info, match)
    extra = f"; {rep.ignored_files} other PNG(s) left out" if rep.ignored_files else ""
    typer.echo(f"wrote {rep.out}: {rep.predictions} predictions{' + match.json' if rep.match else ''}, "
               f"{rep.bytes:,} bytes{extra}")


app = typer.Typer()
app.add_typer(info_app, name="info")
app.add_typer(submit_app, name="submit")
