"""The ``datakit`` command: one typer app; each command group is a module-level app in its own module.

Command modules import only typer at module level; every heavy library is imported inside the
command that needs it, so ``datakit --help`` starts about as fast as typer itself.
"""


import sys
from typing import Optional

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


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"datakit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")) -> None:
    """Shards, recipes, CLIP retrieval, streaming and evaluation for segmentation research."""


def _register() -> None:
    from . import build, clip, evaluate, imagenets, inspect, train  # noqa: I001

    for module in (build, inspect, imagenets, evaluate, clip, train):
        app.add_typer(module.app)


def expand_args(argv: list[str]) -> list[str]:
    """``--resume=MODE`` is ``--resume --resume-check MODE`` (the one option typer cannot spell)."""
    out: list[str] = []
    for arg in argv:
        if arg.startswith("--resume="):
            out += ["--resume", "--resume-check", arg.split("=", 1)[1]]
        else:
            out.append(arg)
    return out


def _warn(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
          line: str | None = None) -> None:
    """Warnings as one line each, like errors."""
    print(f"datakit: warning: {message}", file=sys.stderr)


def main() -> None:
    import warnings

    warnings.showwarning = _warn
    _register()
    try:
        app(args=expand_args(sys.argv[1:]), prog_name="datakit")
    except DatakitError as err:
        print(f"datakit: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("datakit: interrupted; finished shards are kept, rerun with --resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
