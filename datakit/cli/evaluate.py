"""Evaluation commands: ``datakit eval imagenets|semseg|coco`` and ``datakit match imagenets``.

Only parses options, calls one library function and prints a table (or JSON with ``--json``).
"""


import json
import math
from typing import Any, Optional

import typer

from .output import console, table

app = typer.Typer()
eval_app = typer.Typer(help="Evaluate predictions (ImageNet-S official, generic semseg, COCO mask AP, the protocols).",
                       no_args_is_help=True)
match_app = typer.Typer(help="Match cluster ids to classes (fully unsupervised protocols).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(match_app, name="match")


def _fmt(v: Any) -> str:
    """Two decimals; '-' for an undefined score."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _print_json(obj: Any) -> None:
    """Strict JSON on stdout (NaN is not JSON)."""
    print(json.dumps(obj, indent=1, allow_nan=False))


def _summary_table(title: str, metrics: dict[str, Any]) -> Any:
    """One metric per row, so a dozen metrics stay readable in a narrow terminal."""
    out = table(title=title)
    out.add_column("metric")
    out.add_column("value", justify="right")
    for key, value in metrics.items():
        out.add_row(key, _fmt(value))
    return out


def _class_table(classes: list[dict[str, Any]], cols: tuple[str, ...]) -> Any:
    """One row per class id."""
    out = table(title="per class")
    out.add_column("id", justify="right")
    out.add_column("class")
    for c in cols:
        out.add_column(c, justify="right")
    for row in classes:
        out.add_row(str(row["id"]), row["name"], *(_fmt(row[c]) for c in cols))
    return out


def _notes(notes: list[str]) -> None:
    """Warnings on stderr, so they never mix into piped output."""
    for note in notes:
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")


@eval_app.command("imagenets")
def eval_imagenets(
    subset: int = typer.Option(..., "--subset", help="50, 300 or 919."),
    pred: str = typer.Option(..., "--pred", help="Prediction folder: <wnid>/<name>.png, RGB, id = R + 256*G."),
    gt: str = typer.Option(..., "--gt",
                           help="Validation shards (split folder or index.json) or validation-segmentation folder."),
    match: Optional[str] = typer.Option(None, "--match", help="match.json from `datakit match imagenets`."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print every class's IoU and BIoU."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """The official ImageNet-S evaluation (mIoU, mBIoU, size buckets, Acc, F-measure) on CPU."""
    from ..eval.matching import load_match
    from ..eval.runner import EvalOptions, evaluate_imagenets

    m = load_match(match) if match else None
    rep = evaluate_imagenets(pred, gt, subset, m, EvalOptions(workers=workers, progress=not as_json))
    out = rep.to_json()
    if as_json:
        _print_json(out)
        return
    if per_class:
        console().print(_class_table(out["classes"], ("IoU", "BIoU")))
    console().print(_summary_table(f"ImageNet-S{subset}: {rep.images} images", rep.metrics))
    _notes(rep.notes)

@eval_app.command("semseg")
def eval_semseg(
    pred: str = typer.Option(..., "--pred", help="Prediction folder: <key>.png single-channel class ids."),
    gt: str = typer.Option(..., "--gt", help="Split folder or index.json of the GT shards."),
    member: Optional[str] = typer.Option(None, "--member", help="Mask member (default: the split's semantic mask)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes."),
    per_class: bool = typer.Option(False, "--per-class", help="Also print every class's IoU and accuracy."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Confusion-matrix mIoU, per-class IoU and pixel accuracy against any dataset's shards."""
    from ..eval.runner import EvalOptions
    from ..eval.semseg import evaluate_semseg

    rep = evaluate_semseg(pred, gt, member, EvalOptions(workers=workers, progress=not as_json))
    out = rep.to_json()
    if as_json:
        _print_json(out)
        return
    if per_class:
        console().print(_class_table(out["classes"], ("IoU", "Acc")))
    console().print(_summary_table(f"{gt}: {rep.images} images", rep.metrics))

@eval_app.command("coco")
def eval_coco(
    gt: str = typer.Option(..., "--gt", help="COCO instances JSON (e.g. instances_train2014_sel20k.json)."),
    results: str = typer.Option(..., "--results", help="COCO results JSON with RLE segmentations."),
    contiguous: bool = typer.Option(False, "--contiguous", help="category_id is 1..K (ZUTIS), map to COCO ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Instance mask AP through pycocotools' COCOeval (COCO-20K as ZUTIS)."""
    from ..eval.coco_ap import coco_mask_ap, contiguous_to_coco, load_coco
    from ..eval.confusion import finite_or_none

    coco = load_coco(gt)
    stats = coco_mask_ap(coco, results, contiguous_to_coco(coco) if contiguous else None)
    if as_json:
        _print_json({k: finite_or_none(v) for k, v in stats.items()})
        return
    console().print(_summary_table("COCO mask AP", stats))

@match_app.command("imagenets")
def match_imagenets_cmd(
    subset: int = typer.Option(..., "--subset", help="50, 300 or 919."),
    pred: str = typer.Option(..., "--pred", help="Prediction folder of raw cluster ids (<wnid>/<name>.png)."),
    gt: str = typer.Option(..., "--gt", help="Validation shards or validation-segmentation folder."),
    out: str = typer.Option(..., "--out", "-o", help="match.json to write."),
    clusters: Optional[int] = typer.Option(None, "--clusters", help="Cluster ids 1..C (default: N)."),
    method: str = typer.Option("auto", "--method", help="auto (Hungarian when C = N), hungarian or majority."),
    ties: str = typer.Option("official", "--ties",
                             help="Equal optima: official (match.py's munkres order) or identity "
                                  "(cluster i -> class i first)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a summary line."),
) -> None:
    """Official fully-unsupervised matching by image-level co-occurrence on validation.

    By default ties between equally good matches are broken exactly as the official match.py
    (the munkres package) breaks them, so the match and the mIoU equal the official ones.
    """
    from ..eval.matching import save_match
    from ..eval.runner import EvalOptions, match_imagenets

    rep = match_imagenets(pred, gt, subset, clusters, method, EvalOptions(workers=workers, progress=not as_json), ties)
    save_match(rep.match, out)
    if as_json:
        _print_json({"out": out, "images": rep.images, "method": rep.method, "cooccurrence": rep.cooccurrence,
                     "match": rep.match.to_json()})
        return
    moved = sum(1 for k, v in rep.match.table.items() if k != v)
    console().print(f"matched {len(rep.match.table) - 1} clusters over {rep.images} images ({rep.method}); "
                  f"summed co-occurrence {rep.cooccurrence}; {moved} ids change; wrote {out}")


# ``eval kmeans|probe|distance``: the feature-based protocols over ``<key>.npz`` files.

@eval_app.command("kmeans")
def eval_kmeans(
    features: str = typer.Option(..., "--features",
                                 help="Folder of <key>.npz with 'embedding' (D,h,w) and 'saliency' (h,w)."),
    gt: str = typer.Option(..., "--gt", help="Split folder of the GT shards (e.g. VOC val)."),
    clusters: int = typer.Option(20, "--clusters", help="K-means clusters (MaskContrast: 20 + background)."),
    seeds: str = typer.Option("1234,1235,1236,1237,1238", "--seeds", help="Comma-separated seeds."),
    pca: int = typer.Option(32, "--pca", help="PCA dimensions with whitening (0 = none)."),
    backend: str = typer.Option("numpy", "--backend",
                                help="numpy, or sklearn (MaskContrast's MiniBatchKMeans: equal per-seed numbers)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """MaskContrast's K-means protocol: one salient prototype per image, clustered, matched, mIoU per seed."""
    from ..errors import InputError
    from ..eval.kmeans import KMeansProtocol
    from ..eval.protocols import kmeans_files

    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--seeds must be comma-separated integers, not {seeds!r}") from None
    if backend not in ("numpy", "sklearn"):
        raise InputError(f"--backend must be numpy or sklearn, not {backend!r}")
    rep = kmeans_files(features, gt, KMeansProtocol(n_clusters=clusters, pca_dim=pca or None, seeds=seed_list,
                                                    backend=backend))
    out = {"mIoU": rep.miou, "std": rep.miou_std, "mIoU_per_seed": rep.miou_per_seed, "seeds": list(seed_list)}
    if as_json:
        _print_json(out)
        return
    console().print(_summary_table(f"K-means ({backend}), {len(seed_list)} seeds", {
        "mIoU": rep.miou, "std": rep.miou_std, **{f"seed {s}": m for s, m in zip(seed_list, rep.miou_per_seed)}}))

@eval_app.command("probe")
def eval_probe(
    train_features: str = typer.Option(..., "--train-features", help="Folder of <key>.npz with 'features' (C,h,w)."),
    train_gt: str = typer.Option(..., "--train-gt", help="Split of shards with the training masks."),
    features: str = typer.Option(..., "--features", help="Features of the evaluation split."),
    gt: str = typer.Option(..., "--gt", help="Split of shards with the evaluation masks."),
    epochs: int = typer.Option(60, "--epochs"),
    lr: float = typer.Option(0.1, "--lr"),
    decay_epochs: str = typer.Option("25", "--decay-epochs", help="Comma-separated epochs of x0.1 LR decay."),
    batch_size: int = typer.Option(16, "--batch-size"),
    label_size: int = typer.Option(512, "--label-size", help="Training labels resized nearest to this square size."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """MaskContrast's linear probe: a 1x1 conv trained on frozen features, scored at GT resolution."""
    from ..errors import InputError
    from ..eval.probe import ProbeOptions
    from ..eval.protocols import probe_files

    try:
        decays = tuple(int(e) for e in decay_epochs.split(",") if e.strip())
    except ValueError:
        raise InputError(f"--decay-epochs must be comma-separated integers, not {decay_epochs!r}") from None
    opts = ProbeOptions(epochs=epochs, lr=lr, decay_epochs=decays, batch_size=batch_size, seed=seed, device=device)
    rep = probe_files(train_features, train_gt, features, gt, opts, label_size)
    if as_json:
        _print_json(rep.to_json())
        return
    console().print(_summary_table(f"linear probe: {rep.images} images", rep.metrics))

@eval_app.command("distance")
def eval_distance(
    bank_features: str = typer.Option(..., "--bank-features", help="train-semi features: <key>.npz with 'features'."),
    bank_gt: str = typer.Option(..., "--bank-gt", help="train-semi shards (masks)."),
    features: str = typer.Option(..., "--features", help="Features of the split to label (upsampled as PASS does)."),
    data: str = typer.Option(..., "--data", help="Split of shards to label (validation or test)."),
    out: str = typer.Option(..., "--out", "-o", help="Prediction folder (<wnid>/<name>.png) for `eval imagenets`."),
    k: int = typer.Option(10, "--k"),
    temperature: float = typer.Option(0.07, "--temperature"),
) -> None:
    """ImageNet-S distance matching (PASS): weighted kNN of pixel features against class embeddings."""
    from ..eval.distance import KnnOptions
    from ..eval.protocols import distance_files

    n = distance_files(bank_features, bank_gt, features, data, out, KnnOptions(k=k, temperature=temperature))
    console().print(f"wrote {n} predictions to {out}; score them with `datakit eval imagenets --pred {out}`")
