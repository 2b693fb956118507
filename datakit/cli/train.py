"""Training commands: train, predict. Parse, call, print."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def train(config: str = typer.Argument(..., help="Training config (TOML or YAML)."),
              resume: bool = typer.Option(False, help="Continue from <out>/checkpoint.pt exactly.")) -> None:
        """Train a segmenter on datakit shards (CPU, one GPU, or many under torchrun)."""
        from ..train.config import load_config
        from ..train.loop import train as run_train

        result = run_train(load_config(config), resume=resume)
        typer.echo(f"{result.iterations} steps, last loss {result.losses[-1] if result.losses else float('nan'):.4f}, "
                   f"{result.samples_per_s:.1f} samples/s; checkpoint {result.checkpoint}")

    @app.command()
    def predict(checkpoint: str = typer.Option(..., help="Trainer checkpoint.pt."),
                data: str = typer.Option(..., help="Split folder of shards to predict."),
                out: str = typer.Option(..., "--out", "-o", help="Output folder."),
                fmt: str = typer.Option("png", "--format", help="imagenets | png | coco-rle"),
                device: Optional[str] = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ...")) -> None:
        """Write predictions in a benchmark's submission format."""
        from ..train.predict import predict as run_predict

        rep = run_predict(checkpoint, data, out, fmt, device or "auto")
        typer.echo(f"wrote {rep.images} predictions ({rep.format}) to {rep.out}")
