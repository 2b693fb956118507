"""The ``datakit`` command: one typer app; each command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from ..errors import DatakitError

app = typer.Typer(
    name="datakit",
    help="Shards, recipes, CLIP retrieval, streaming and evaluation for segmentation research.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: rich's help renderer costs ~0.4 s of imports on every --help
)


def _register() -> None:
    from . import clip, data, evaluate, imagenets, train  # noqa: I001

    for module in (data, imagenets, evaluate, clip, train):
        module.register(app)


def main() -> None:
    _register()
    try:
        app()
    except DatakitError as err:
        print(f"datakit: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("datakit: interrupted; finished shards are kept, rerun with --resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
