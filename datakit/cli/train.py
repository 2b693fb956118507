"""Training commands: train, predict, pseudolabel. Parse, call, print."""


from typing import Optional

import typer


app = typer.Typer()


@app.command()
def train(config: str = typer.Argument(..., help="Training config (TOML or YAML), or a shipped one: `datakit configs`."),
          resume: bool = typer.Option(False, help="Continue from <out>/checkpoint.pt exactly."),
          allow_config_change: bool = typer.Option(False, "--allow-config-change",
                                                   help="Resume although the config changed "
                                                        "(only iterations may change without it)."),
          overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run in the same out folder."),
          out: Optional[str] = typer.Option(None, "--out", "-o", help="Override train.out."),
          iterations: Optional[int] = typer.Option(None, "--iterations", help="Override train.iterations.")) -> None:
    """Train a segmenter on datakit shards (CPU, one GPU, or many under torchrun)."""
    from ..train.configs import resolve_config
    from ..train.config import load_config
    from ..train.loop import RunOptions
    from ..train.loop import train as run_train

    overrides = {k: v for k, v in {"train.out": out, "train.iterations": iterations}.items() if v is not None}
    cfg = load_config(resolve_config(config), overrides)
    result = run_train(cfg, log=typer.echo, opts=RunOptions(resume, allow_config_change, overwrite))
    typer.echo(f"{result.iterations} steps, last loss {result.losses[-1] if result.losses else float('nan'):.4f}, "
               f"{result.samples_per_s:.1f} samples/s; checkpoint {result.checkpoint}")


@app.command()
def configs() -> None:
    """List the shipped training configs (each names the paper or config file it reproduces)."""
    from ..train.configs import list_configs

    for name, source in list_configs():
        typer.echo(f"{name:42s} {source}")


@app.command()
def predict(checkpoint: str = typer.Option(..., help="Trainer checkpoint.pt."),
            data: str = typer.Option(..., help="Split folder of shards to predict."),
            out: str = typer.Option(..., "--out", "-o", help="Output folder."),
            fmt: str = typer.Option("png", "--format", help="imagenets | png | coco-rle"),
            device: Optional[str] = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
            resize_short: Optional[int] = typer.Option(None, "--resize-short",
                                                       help="Resize the short side to this first (ImageNet-S: 256)."),
            max_res: Optional[int] = typer.Option(None, "--max-res",
                                                  help="Over max_res^2 pixels: label at long side max_res, upsample ids."),
            mode: Optional[str] = typer.Option(None, "--mode", help="whole or slide (sliding window)."),
            crop: Optional[int] = typer.Option(None, "--crop", help="Sliding window size."),
            stride: Optional[int] = typer.Option(None, "--stride", help="Sliding window stride."),
            flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Average with the mirrored prediction."),
            quiet: bool = typer.Option(False, "--quiet", help="No progress bar.")) -> None:
    """Write predictions in a benchmark's submission format (test-time options default to the config's [test])."""
    from ..train.predict import PredictOptions
    from ..train.predict import predict as run_predict

    opts = PredictOptions(fmt, device or "auto", resize_short, max_res, mode, crop, stride, flip, not quiet)
    rep = run_predict(checkpoint, data, out, opts)
    typer.echo(f"wrote {rep.images} predictions ({rep.format}) to {rep.out}")


@app.command()
def features(data: str = typer.Option(..., help="Split folder of shards."),
             out: str = typer.Option(..., "--out", "-o", help="Folder for <key>.npz feature files."),
             checkpoint: str = typer.Option("", help="Trainer checkpoint (its backbone), or"),
             backbone: str = typer.Option("", help="a backbone name (timm, open_clip:NAME)"),
             pretrained: str = typer.Option("", help="with this pretrained file / tag."),
             resize_short: int = typer.Option(0, "--resize-short", help="Short side first (PASS: 256)."),
             upsample: int = typer.Option(1, "--upsample", help="Bilinear feature upsampling (PASS: 4)."),
             device: Optional[str] = typer.Option("auto"),
             quiet: bool = typer.Option(False, "--quiet", help="No progress bar.")) -> None:
    """Backbone features per sample, for `eval probe` and `eval distance`."""
    from ..train.features import FeatureOptions, extract

    opts = FeatureOptions(checkpoint, backbone, pretrained, resize_short, upsample, device or "auto", not quiet)
    n = extract(data, out, opts)
    typer.echo(f"wrote features of {n} samples to {out}")


@app.command()
def pseudolabel(checkpoint: str = typer.Option(..., help="Trainer checkpoint.pt (e.g. PASS's clustering stage)."),
                data: str = typer.Option(..., help="Split folder of shards to label."),
                out: str = typer.Option(..., "--out", "-o", help="Dataset folder for the new shards."),
                member: str = typer.Option("pseudo.png", "--member", help="Mask member to add."),
                device: Optional[str] = typer.Option("auto", help="auto, cpu, cuda ..."),
                workers: int = typer.Option(1, "--workers", "-w", help="Build worker processes."),
                resume: bool = typer.Option(False, help="Keep finished predictions and shards."),
                quiet: bool = typer.Option(False, "--quiet", help="No progress bar.")) -> None:
    """PASS's pseudo-label step: predict a split and write it back as shards with a mask member."""
    from ..train.pseudo import PseudoOptions, pseudolabel as run_pseudo

    rep = run_pseudo(checkpoint, data, out, PseudoOptions(member, device or "auto", workers, resume, not quiet))
    typer.echo(f"wrote {rep.samples} samples with {member} to {rep.index}")
