"""`datakit eval imagenets|semseg` and `datakit match imagenets` end to end on generated folders and shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from datakit.cli import evaluate
from datakit.errors import InputError
from datakit.shards.index import make_index, write_index
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
from datakit.shards.writer import ShardWriter
from helpers_eval import S50_VAL, blob_gt, write_id_png, write_imagenets_shards

FIXTURES = Path(__file__).parent / "fixtures"
WNID_ID = {"n01443537": 1, "n01531178": 3}  # lines 1 and 3 of the S50 category list


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    app.add_typer(evaluate.app)
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(app, list(args))
        if ok and result.exit_code != 0:
            raise AssertionError(f"{args} failed: {result.output}\n{result.exception!r}")
        return result

    return run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An official-style GT folder, the same GT as shards, and a perfect prediction folder."""
    root = tmp_path_factory.mktemp("s50")
    samples = []
    for i, (wnid, name) in enumerate(S50_VAL):
        gt = blob_gt(i, 30 + 4 * i, 40, [WNID_ID[wnid]] + ([1] if i == 3 else []))
        samples.append((wnid, name, gt))
        write_id_png(root / "ImageNetS50" / "validation-segmentation" / wnid / f"{name}.png", gt)
        write_id_png(root / "pred" / wnid / f"{name}.png", np.where(gt == 1000, 0, gt))
    write_imagenets_shards(root / "shards" / "validation", samples)
    return root, samples


def _json(result) -> dict:
    return json.loads(result.output)


def test_perfect_prediction_on_a_gt_folder(cli, data):
    root, samples = data
    out = _json(cli("eval", "imagenets", "--subset", "50", "--pred", str(root / "pred"), "--gt", str(root / "ImageNetS50"),
                    "--json"))
    present = {0, 1, 3}
    ious = {c["id"]: c["IoU"] for c in out["classes"]}
    assert len(ious) == 51 and all(ious[i] == pytest.approx(100.0) for i in present)
    assert all(ious[i] == 0.0 for i in range(51) if i not in present)
    m = out["metrics"]
    assert m["mIoU"] == pytest.approx(100.0 * 3 / 51)  # absent classes count 0, as officially
    assert m["Acc"] == pytest.approx(100.0) and m["FMeasure"] == pytest.approx(100.0)
    assert out["images"] == 4 and "752" in out["notes"][0]
    assert out["classes"][1]["name"] == "goldfish"


def test_shards_and_folder_and_workers_agree(cli, data):
    root, _ = data
    args = ("eval", "imagenets", "--subset", "50", "--pred", str(root / "pred"), "--json")
    folder = _json(cli(*args, "--gt", str(root / "ImageNetS50" / "validation-segmentation")))
    shards = _json(cli(*args, "--gt", str(root / "shards" / "validation")))
    pooled = _json(cli(*args, "--gt", str(root / "shards" / "validation"), "--workers", "2"))
    assert folder["metrics"] == shards["metrics"] == pooled["metrics"]
    table = cli("eval", "imagenets", "--subset", "50", "--pred", str(root / "pred"), "--gt", str(root / "shards" / "validation"))
    assert "mIoU" in table.output and "mBIoU" in table.output


def test_imperfect_prediction_scores_below_100(cli, data, tmp_path):
    root, samples = data
    for wnid, name, gt in samples:
        pred = np.where(gt == 1000, 0, gt)
        pred[: pred.shape[0] // 2] = 0  # top half predicted as background
        write_id_png(tmp_path / wnid / f"{name}.png", pred)
    out = _json(cli("eval", "imagenets", "--subset", "50", "--pred", str(tmp_path), "--gt", str(root / "ImageNetS50"), "--json"))
    assert 0 < out["classes"][1]["IoU"] < 100 and out["metrics"]["mBIoU"] < 100.0 * 3 / 51


def test_missing_wrong_size_and_wrong_format_predictions_are_named(cli, data, tmp_path):
    root, samples = data
    pred = tmp_path / "pred"
    shutil.copytree(root / "pred", pred)
    wnid, name, gt = samples[2]
    target = pred / wnid / f"{name}.png"
    target.unlink()
    for gt_arg in (root / "ImageNetS50", root / "shards" / "validation"):
        res = cli("eval", "imagenets", "--subset", "50", "--pred", str(pred), "--gt", str(gt_arg), ok=False)
        assert isinstance(res.exception, InputError) and name in str(res.exception)
    write_id_png(target, np.zeros((gt.shape[0] + 1, gt.shape[1]), dtype=np.int64))
    res = cli("eval", "imagenets", "--subset", "50", "--pred", str(pred), "--gt", str(root / "shards" / "validation"), ok=False)
    assert isinstance(res.exception, InputError) and name in str(res.exception) and "40x" in str(res.exception)
    Image.fromarray(np.zeros(gt.shape, dtype=np.uint8), "L").save(target)
    res = cli("eval", "imagenets", "--subset", "50", "--pred", str(pred), "--gt", str(root / "ImageNetS50"), ok=False)
    assert isinstance(res.exception, InputError) and "RGB" in str(res.exception) and name in str(res.exception)


def test_wrong_subset_is_refused(cli, data):
    root, _ = data
    for subset, gt in (("300", root / "shards" / "validation"), ("7", root / "ImageNetS50")):
        res = cli("eval", "imagenets", "--subset", subset, "--pred", str(root / "pred"), "--gt", str(gt), ok=False)
        assert isinstance(res.exception, InputError)


def test_match_then_eval_recovers_permuted_clusters(cli, data, tmp_path):
    root, samples = data
    perm = {0: 0, 1000: 0, 1: 17, 3: 42}  # class -> raw cluster id
    for wnid, name, gt in samples:
        write_id_png(tmp_path / "clusters" / wnid / f"{name}.png", np.vectorize(perm.get)(gt))
    match_path = tmp_path / "match.json"
    res = _json(cli("match", "imagenets", "--subset", "50", "--pred", str(tmp_path / "clusters"),
                    "--gt", str(root / "shards" / "validation"), "--out", str(match_path), "--json"))
    table = json.loads(match_path.read_text())
    assert table["17"] == 1 and table["42"] == 3 and table["0"] == 0 and len(table) == 51
    assert res["method"] == "hungarian" and res["images"] == 4 and res["cooccurrence"] == 5
    matched = _json(cli("eval", "imagenets", "--subset", "50", "--pred", str(tmp_path / "clusters"), "--gt",
                        str(root / "ImageNetS50"), "--match", str(match_path), "--json"))
    perfect = _json(cli("eval", "imagenets", "--subset", "50", "--pred", str(root / "pred"), "--gt", str(root / "ImageNetS50"),
                        "--json"))
    assert matched["metrics"] == perfect["metrics"]


def _semseg_shards(out: Path, samples: list[tuple[str, np.ndarray]], names: list[str], ignore: int) -> Path:
    spec = SplitSpec(dataset="tiny", split="val", classes=ClassTable.from_names(names, ignore),
                     masks=(MaskMember(ext="seg.png", bits=8, fill=ignore),))
    out.mkdir(parents=True)
    writer = ShardWriter(out, "val-000000", spec, strict=True)
    for key, gt in samples:
        writer.write(key, image=np.zeros(gt.shape + (3,), dtype=np.uint8), masks={"seg.png": gt}, meta={})
    write_index(out, make_index(spec, [writer.close()], {}))
    return out


def test_eval_semseg_hand_computed(cli, tmp_path):
    gt_a = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]], dtype=np.uint8)
    gt_b = np.full((3, 4), 2, dtype=np.uint8)
    shards = _semseg_shards(tmp_path / "val", [("a", gt_a), ("b", gt_b)], ["bg", "cat", "dog", "cow"], 255)
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray(np.array([[0, 1, 1, 1], [0, 0, 1, 2], [2, 0, 2, 0]], dtype=np.uint8), "L").save(pred / "a.png")
    Image.fromarray(np.full((3, 4), 2, dtype=np.uint8), "L").save(pred / "b.png")
    out = _json(cli("eval", "semseg", "--pred", str(pred), "--gt", str(shards), "--json"))
    iou = [c["IoU"] for c in out["classes"]]
    # bg 3/5, cat 3/5, dog: tp 1 + 12, predicted 2 + 12, GT 2 + 12 -> 13/15; cow absent
    assert iou[:3] == pytest.approx([60.0, 60.0, 100 * 13 / 15]) and iou[3] is None
    assert out["metrics"]["mIoU"] == pytest.approx((60 + 60 + 100 * 13 / 15) / 3)
    assert out["metrics"]["mIoU_all"] == pytest.approx((60 + 60 + 100 * 13 / 15) / 4)
    assert out["metrics"]["aAcc"] == pytest.approx(100 * 19 / 22)
    (pred / "b.png").unlink()
    res = cli("eval", "semseg", "--pred", str(pred), "--gt", str(shards), ok=False)
    assert isinstance(res.exception, InputError) and "b.png" in str(res.exception)


def test_eval_semseg_on_real_ade20k_masks(cli, tmp_path):
    src = sorted((FIXTURES / "ade20k" / "annotations" / "validation").glob("*.png"))
    samples = [(p.stem, np.asarray(Image.open(p))) for p in src]
    shards = _semseg_shards(tmp_path / "val", samples, ["other"] + [f"c{i}" for i in range(1, 151)], 255)
    pred = tmp_path / "pred"
    pred.mkdir()
    for p in src:
        shutil.copy(p, pred / p.name)
    out = _json(cli("eval", "semseg", "--pred", str(pred), "--gt", str(shards), "--json", "--workers", "1"))
    assert out["images"] == 3
    assert out["metrics"]["mIoU"] == pytest.approx(100.0) and out["metrics"]["aAcc"] == pytest.approx(100.0)
    present = {int(v) for _, m in samples for v in np.unique(m)}
    assert {c["id"] for c in out["classes"] if c["IoU"] is not None} == present


def test_prediction_paths_of_imagenets_samples():
    from datakit.errors import SampleError
    from datakit.eval.gt import imagenets_rel

    assert imagenets_rel("ILSVRC2012_val_00000001", {"wnid": "n01443537", "path": "val/n01440764/ILSVRC2012_val_00000001.JPEG"}) \
        == "n01443537/ILSVRC2012_val_00000001.png"  # the ImageNet-S class, not the ImageNet label folder
    assert imagenets_rel("k", {"wnid": "n01443537", "file": "x/ILSVRC2012_val_00000002.JPEG"}) \
        == "n01443537/ILSVRC2012_val_00000002.png"
    assert imagenets_rel("n01443537_ILSVRC2012_val_00000003", {}) == "n01443537/ILSVRC2012_val_00000003.png"
    with pytest.raises(SampleError, match="no wnid"):
        imagenets_rel("ILSVRC2012_val_00000004", {})


def test_dataset_root_means_its_validation_split(cli, data):
    root, _ = data
    out = _json(cli("eval", "imagenets", "--subset", "50", "--pred", str(root / "pred"), "--gt", str(root / "shards"), "--json"))
    assert out["images"] == 4


def test_a_truncated_shard_is_a_corrupt_shard_error(cli, data, tmp_path):
    from datakit.errors import CorruptShardError

    root, _ = data
    shards = tmp_path / "validation"
    shutil.copytree(root / "shards" / "validation", shards)
    tar = shards / "validation-000001.tar"
    tar.write_bytes(tar.read_bytes()[:1500])
    res = cli("eval", "imagenets", "--subset", "50", "--pred", str(root / "pred"), "--gt", str(shards), ok=False)
    assert isinstance(res.exception, CorruptShardError) and "validation-000001.tar" in str(res.exception)
