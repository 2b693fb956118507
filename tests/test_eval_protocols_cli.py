"""``datakit eval kmeans|probe|distance`` and ``datakit features`` on generated shards and feature files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from datakit.cli import evaluate
from datakit.eval.kmeans import KMeansProtocol, kmeans_protocol, salient_prototypes
from datakit.shards.index import make_index, write_index
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
from datakit.shards.writer import ShardWriter


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    app.add_typer(evaluate.app)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
        return json.loads(result.output)

    return run


def _split(root, name, gts, classes=4, ignore=255, metas=None):
    spec = SplitSpec(dataset="gen", split=name, classes=ClassTable.from_names([f"c{i}" for i in range(classes)], ignore),
                     masks=(MaskMember.for_ids(max(classes, ignore), fill=ignore),))
    out = root / name
    out.mkdir(parents=True)
    w = ShardWriter(out, f"{name}-000000", spec)
    for i, gt in enumerate(gts):
        meta = metas[i] if metas else {}
        w.write(f"s{i:03d}", np.zeros(gt.shape + (3,), np.uint8), {"seg.png": gt.astype(np.uint8 if ignore < 256 else np.uint16)},
                meta=meta)
    write_index(out, make_index(spec, [w.close()], {}))
    return out


def test_kmeans_cli_equals_the_library_and_reports_std(cli, tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    gts, feats = [], tmp_path / "feats"
    feats.mkdir()
    for i in range(24):
        c = i % 3
        sal = np.zeros((8, 8))
        sal[2:6, 2:6] = 0.9
        emb = rng.normal(scale=0.3, size=(16, 8, 8)) + centres[c][:, None, None]
        gt = np.where(sal > 0.5, c + 1, 0)
        gt[0, 0] = 255
        gts.append(gt)
        np.savez(feats / f"s{i:03d}.npz", embedding=emb, saliency=sal)
    split = _split(tmp_path, "val", gts)
    out = cli("eval", "kmeans", "--features", feats, "--gt", split, "--clusters", "3", "--seeds", "1,2", "--pca", "0", "--json")
    data = [np.load(feats / f"s{i:03d}.npz") for i in range(24)]
    protos = salient_prototypes(np.stack([d["embedding"] for d in data]), np.stack([d["saliency"] for d in data]))
    ref = kmeans_protocol(protos, [d["saliency"] > 0.5 for d in data], gts,
                          KMeansProtocol(n_clusters=3, pca_dim=None, seeds=(1, 2), num_classes=4))
    assert out["mIoU_per_seed"] == pytest.approx(ref.miou_per_seed) and out["std"] == pytest.approx(ref.miou_std)
    assert out["mIoU"] == pytest.approx(100.0)


def test_kmeans_sklearn_backend_is_maskcontrasts_call(cli, tmp_path):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    protos = rng.normal(size=(60, 40)).astype(np.float32)
    fg = [np.ones((4, 4), np.uint8)] * 60
    gts = [np.full((4, 4), i % 5 + 1) for i in range(60)]
    rep = kmeans_protocol(protos, fg, gts, KMeansProtocol(n_clusters=5, seeds=(1234, 1235), num_classes=6, backend="sklearn"))
    x = PCA(n_components=32, whiten=True).fit_transform(protos)
    for seed, miou in zip((1234, 1235), rep.miou_per_seed):
        clusters = MiniBatchKMeans(n_clusters=5, batch_size=1000, random_state=seed).fit_predict(x)
        from datakit.eval.kmeans import score_clusters

        assert miou == pytest.approx(score_clusters(clusters, fg, gts, KMeansProtocol(n_clusters=5, num_classes=6))[0])
    assert sklearn is not None


def test_probe_cli_learns_separable_features(cli, tmp_path):
    rng = np.random.default_rng(0)
    gts = []
    feats = tmp_path / "f"
    feats.mkdir()
    for i in range(6):
        gt = rng.integers(0, 3, size=(8, 8))
        gts.append(gt)
        f = np.eye(3)[gt].transpose(2, 0, 1) * 2.0 + rng.normal(scale=0.05, size=(3, 8, 8))
        np.savez(feats / f"s{i:03d}.npz", features=f.astype(np.float32))
    split = _split(tmp_path, "train", gts, classes=3)
    out = cli("eval", "probe", "--train-features", feats, "--train-gt", split, "--features", feats, "--gt", split,
              "--epochs", "30", "--decay-epochs", "25", "--batch-size", "2", "--label-size", "8", "--json")
    assert out["metrics"]["mIoU"] == pytest.approx(100.0) and out["images"] == 6


def test_distance_cli_writes_imagenets_predictions(cli, tmp_path):
    rng = np.random.default_rng(5)
    dirs = np.eye(6)[:3] * 3.0
    bank_gts, val_gts = [], []
    bf, vf = tmp_path / "bf", tmp_path / "vf"
    bf.mkdir()
    vf.mkdir()
    for i in range(4):
        m = np.zeros((16, 16), np.int64)
        m[4:12, 4:12] = 1 + i % 2
        bank_gts.append(m)
        np.savez(bf / f"s{i:03d}.npz", features=dirs[m].transpose(2, 0, 1) + rng.normal(scale=0.05, size=(6, 16, 16)))
        val_gts.append(m)
        np.savez(vf / f"s{i:03d}.npz", features=dirs[m].transpose(2, 0, 1) + rng.normal(scale=0.05, size=(6, 16, 16)))
    bank = _split(tmp_path, "train-semi", bank_gts, classes=3, ignore=1000)
    metas = [{"wnid": "n01443537", "path": f"n01443537/ILSVRC2012_val_{i:08d}.JPEG"} for i in range(4)]
    val = _split(tmp_path, "validation", val_gts, classes=3, ignore=1000, metas=metas)
    runner = CliRunner()
    app = typer.Typer()
    app.add_typer(evaluate.app)
    result = runner.invoke(app, ["eval", "distance", "--bank-features", str(bf), "--bank-gt", str(bank), "--features", str(vf),
                                 "--data", str(val), "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    from datakit.eval.gt import decode_id_png

    for i in range(4):
        pred = decode_id_png(str(tmp_path / "pred" / "n01443537" / f"ILSVRC2012_val_{i:08d}.png"))
        assert np.array_equal(pred, val_gts[i])
