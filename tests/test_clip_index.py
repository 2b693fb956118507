"""``datakit index`` with a tiny random-weight open_clip model: storage, resume, ranks, merge, model checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # never download anything

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("open_clip")

from datakit.clip import store  # noqa: E402
from datakit.clip.embed import IndexOptions, build_index, merge_indexes  # noqa: E402
from datakit.clip.images import parse_input  # noqa: E402
from datakit.clip.model import (  # noqa: E402
    TINY_CONFIG, ModelSpec, _canonical_name, encode_images, load_model, register_tiny_model, select_device)
from datakit.errors import InputError  # noqa: E402

WNIDS = ("n01440764", "n01443537")


@pytest.fixture(scope="module")
def tiny() -> str:
    return register_tiny_model()


@pytest.fixture(scope="module")
def tiny16() -> str:
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    return register_tiny_model("datakit-tiny16", cfg)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ImageNet-style train folder (2 wnids x 5) and a PASS-style folder (6 images + 1 broken)."""
    base = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    imagenet = base / "ImageNet2012" / "train"
    for w, wnid in enumerate(WNIDS):
        (imagenet / wnid).mkdir(parents=True)
        for i in range(5):
            arr = np.clip(rng.normal(60 + 120 * w, 30, (40 + 3 * i, 52, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(imagenet / wnid / f"{wnid}_{i}.JPEG", quality=90)
    pas = base / "pass" / "images"
    pas.mkdir(parents=True)
    for i in range(6):
        arr = np.zeros((48, 36 + i, 3), np.uint8)
        arr[..., i % 3] = 200
        Image.fromarray(arr).save(pas / f"{i:04d}abc.jpg")
    (pas / "0099broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return {"imagenet": imagenet, "pass": pas}


def _opts(model: str, **kw: object) -> IndexOptions:
    base = dict(model=ModelSpec(model, None), device="cpu", workers=0, part_size=4, progress=False, batch_size=3)
    base.update(kw)
    return IndexOptions(**base)  # type: ignore[arg-type]


def _inputs(trees: dict[str, Path]) -> list:
    return [parse_input(str(trees["imagenet"])), parse_input(str(trees["pass"]))]


def _npy_bytes(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((out / "parts").glob("*.npy"))]


@pytest.fixture(scope="module")
def full_index(tmp_path_factory: pytest.TempPathFactory, tiny: str, trees: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("idx") / "full"
    report = build_index(_inputs(trees), out, _opts(tiny), notify=lambda m: None)
    assert report.manifest is not None
    return out


def test_inputs_are_detected(trees: dict[str, Path]) -> None:
    a, b = _inputs(trees)
    assert (a.name, a.kind) == ("imagenet", "imagenet")
    assert (b.name, b.kind) == ("pass", "folder")
    assert parse_input(f"mine={trees['pass']}").name == "mine"


def test_index_storage_shapes_norms_and_table(full_index: Path, tiny: str, trees: dict[str, Path]) -> None:
    idx = store.ClipIndex(full_index)
    m = idx.manifest
    assert m["count"] == 16 and m["failed"] == 1 and m["dim"] == 32 and m["dtype"] == "float16"
    assert m["model"]["name"] == tiny and m["model"]["preprocess"]["size"] == [64, 64]
    assert [s["count"] for s in m["sources"]] == [10, 6]
    arrays = idx.part_arrays()
    assert [a.shape[0] for a in arrays] == [4, 4, 2, 4, 2]  # 10 imagenet in parts of 4, then 7 pass files (1 broken)
    emb = np.concatenate(arrays)
    assert emb.dtype == np.float16 and emb.shape == (16, 32)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    table = idx.table().to_pydict()
    assert table["path"][0] == f"{WNIDS[0]}/{WNIDS[0]}_0.JPEG" and table["wnid"][0] == WNIDS[0]
    assert table["key"][0] == f"{WNIDS[0]}/{WNIDS[0]}_0"
    assert table["source"][10] == "pass" and table["wnid"][10] is None and table["path"][10] == "0000abc.jpg"
    assert table["part"][:4] == [0] * 4 and table["row"][4:8] == [0, 1, 2, 3]
    marker = json.loads((full_index / "parts" / "part-000004.json").read_text())
    assert marker["failed"] == 1 and marker["failures"][0]["reason"] == "unreadable_image"
    # row 10 is exactly the model's embedding of that file
    loaded = load_model(ModelSpec(tiny, None), "cpu")
    with Image.open(trees["pass"] / "0000abc.jpg") as img:
        direct = encode_images(loaded, loaded.transform(img.convert("RGB"))[None])
    np.testing.assert_array_equal(direct[0], emb[10])


class _Killed(RuntimeError):
    pass


def test_resume_after_a_kill_recomputes_only_missing_parts(tmp_path: Path, tiny: str, trees: dict[str, Path],
                                                            full_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "resumed"
    real = store.write_part
    calls: list[int] = []

    def dying(out_: Path, rows: store.PartRows, *a: object, **k: object) -> dict:
        if len(calls) == 2:
            raise _Killed("simulated kill")
        calls.append(rows.index)
        return real(out_, rows, *a, **k)

    monkeypatch.setattr(store, "write_part", dying)
    with pytest.raises(_Killed):
        build_index(_inputs(trees), out, _opts(tiny), notify=lambda m: None)
    assert not (out / store.MANIFEST).exists()
    assert sorted(p.name for p in (out / "parts").glob("*.json")) == ["part-000000.json", "part-000001.json"]
    (out / "parts" / "part-000002.npy.tmp-4242").write_bytes(b"torn")  # a torn write of the killed run

    calls.clear()
    monkeypatch.setattr(store, "write_part", lambda o, rows, *a, **k: (calls.append(rows.index), real(o, rows, *a, **k))[1])
    report = build_index(_inputs(trees), out, _opts(tiny), notify=lambda m: None)
    assert calls == [2, 3, 4] and report.parts_skipped == 2 and report.manifest is not None
    assert _npy_bytes(out) == _npy_bytes(full_index)
    assert (out / store.TABLE).read_bytes() == (full_index / store.TABLE).read_bytes()
    assert not list((out / "parts").glob("*.tmp-*"))
    again = build_index(_inputs(trees), out, _opts(tiny), notify=lambda m: None)
    assert again.parts_written == 0 and again.parts_skipped == 5


def test_a_different_model_or_input_is_refused(tmp_path: Path, tiny: str, tiny16: str, trees: dict[str, Path],
                                               full_index: Path) -> None:
    out = tmp_path / "copy"
    build_index(_inputs(trees), out, _opts(tiny), notify=lambda m: None)
    with pytest.raises(InputError, match="was written by"):
        build_index(_inputs(trees), out, _opts(tiny16), notify=lambda m: None)
    with pytest.raises(InputError, match="different input"):
        build_index(_inputs(trees), out, _opts(tiny, part_size=3), notify=lambda m: None)
    report = build_index(_inputs(trees), out, _opts(tiny16, overwrite=True), notify=lambda m: None)
    assert report.manifest is not None and report.manifest["dim"] == 16
    # a part whose marker says another model wrote it is refused, not mixed in
    # (an edited marker is simply not trusted: its digest no longer matches, so the part is redone)
    from datakit.jobs.parts import seal

    marker = out / "parts" / "part-000001.json"
    obj = json.loads(marker.read_text())
    marker.write_text(json.dumps({**obj, "rows": obj["rows"] + 1}))
    report = build_index(_inputs(trees), out, _opts(tiny16), notify=lambda m: None)
    assert report.parts_written == 1 and report.manifest is not None
    obj = json.loads(marker.read_text())
    obj["model"]["name"] = "ViT-B-32"
    marker.write_text(json.dumps(seal(obj)))  # a forger who reseals it
    with pytest.raises(InputError, match="refusing to mix"):
        build_index(_inputs(trees), out, _opts(tiny16), notify=lambda m: None)


def test_two_ranks_then_merge_equals_one_run(tmp_path: Path, tiny: str, tiny16: str, trees: dict[str, Path],
                                             full_index: Path) -> None:
    a, b = tmp_path / "rank0", tmp_path / "rank1"
    r0 = build_index(_inputs(trees), a, _opts(tiny, rank=0, world_size=2), notify=lambda m: None)
    r1 = build_index(_inputs(trees), b, _opts(tiny, rank=1, world_size=2), notify=lambda m: None)
    assert (r0.parts_written, r1.parts_written) == (3, 2)
    assert r0.manifest is None and r1.manifest is None and "merge" in r0.notes[-1]
    merged = merge_indexes([a, b], tmp_path / "merged")
    assert merged.manifest is not None and merged.manifest["count"] == 16
    assert _npy_bytes(tmp_path / "merged") == _npy_bytes(full_index)
    assert (tmp_path / "merged" / store.TABLE).read_bytes() == (full_index / store.TABLE).read_bytes()
    with pytest.raises(InputError, match="missing"):
        merge_indexes([a], tmp_path / "partial")
    # ranks sharing one folder: the last one to finish writes the manifest itself
    shared = tmp_path / "shared"
    build_index(_inputs(trees), shared, _opts(tiny, rank=1, world_size=2), notify=lambda m: None)
    last = build_index(_inputs(trees), shared, _opts(tiny, rank=0, world_size=2), notify=lambda m: None)
    assert last.manifest is not None and last.manifest["count"] == 16
    # a rank folder written by another model cannot be merged in
    other = tmp_path / "other"
    build_index(_inputs(trees), other, _opts(tiny16, rank=1, world_size=2), notify=lambda m: None)
    with pytest.raises(InputError, match="written by"):
        merge_indexes([a, other], tmp_path / "bad")


def test_loader_units_split_parts_so_every_worker_has_work(tiny: str, trees: dict[str, Path], full_index: Path,
                                                           tmp_path: Path) -> None:
    from datakit.clip.images import plan_parts
    from datakit.clip.loader import work_units

    tasks = plan_parts(_inputs(trees), 100)  # two parts: all of imagenet (10 files), all of pass (7, one broken)
    units = work_units(tasks, 3)
    assert [(u.task.index, u.chunk, u.start, u.stop, u.last) for u in units] == [
        (0, 0, 0, 3, False), (0, 1, 3, 6, False), (0, 2, 6, 9, False), (0, 3, 9, 10, True),
        (1, 0, 0, 3, False), (1, 1, 3, 6, False), (1, 2, 6, 7, True)]
    # two workers share the chunks of two parts; they come back interleaved and are put back in order
    report = build_index(_inputs(trees), tmp_path / "big_parts", _opts(tiny, part_size=100, workers=2),
                         notify=lambda m: None)
    assert report.images == 16 and report.failed == 1 and report.startup_images == 3
    got = store.ClipIndex(tmp_path / "big_parts")
    ref = store.ClipIndex(full_index)
    assert got.table().column("path").to_pylist() == ref.table().column("path").to_pylist()
    np.testing.assert_array_equal(np.concatenate(got.part_arrays()), np.concatenate(ref.part_arrays()))
    marker = json.loads((tmp_path / "big_parts" / "parts" / "part-000001.json").read_text())
    assert [f["path"] for f in marker["failures"]] == ["0099broken.jpg"]


def test_uint8_batches_normalised_on_the_device_equal_the_full_transform(tiny: str, trees: dict[str, Path]) -> None:
    import torch

    from datakit.clip.loader import open_rgb, split_transform

    loaded = load_model(ModelSpec(tiny, None), "cpu")
    worker, norm = split_transform(loaded.transform)
    assert norm is not None and norm.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    img = open_rgb(str(trees["imagenet"] / WNIDS[1] / f"{WNIDS[1]}_3.JPEG"), "x")
    small = worker(img)
    assert small.dtype == torch.uint8 and tuple(small.shape) == (3, 64, 64)  # a quarter of float32's bytes
    full = loaded.transform(img)
    assert torch.equal(norm(small[None], "cpu", torch.float32)[0], full)  # the same arithmetic, bit for bit
    np.testing.assert_array_equal(encode_images(loaded, small[None], norm), encode_images(loaded, full[None]))
    with pytest.raises(ValueError, match="normalisation"):
        encode_images(loaded, small[None])

    def plain(im: Image.Image) -> Image.Image:
        return im

    assert split_transform(plain) == (plain, None)  # not a Compose ending in ToTensor + Normalize: left whole


def test_device_decoding_on_cpu_tensors(tiny: str, trees: dict[str, Path], full_index: Path, tmp_path: Path) -> None:
    """``--decode device`` run on CPU tensors (the GPU path's twin): JPEG bytes decoded by torchvision, the model's
    resize and crop on tensors; a PNG goes through PIL in the worker; undecodable files become failures."""
    import shutil

    src = tmp_path / "imgs"
    shutil.copytree(trees["pass"], src)
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(src / "0100png.jpg", format="PNG")  # not a JPEG
    good = (src / "0001abc.jpg").read_bytes()
    (src / "0101cut.jpg").write_bytes(good[: len(good) // 3])  # a JPEG header, then the data stops
    ref = build_index([parse_input(str(src))], tmp_path / "pil", _opts(tiny, part_size=100), notify=lambda m: None)
    got = build_index([parse_input(str(src))], tmp_path / "dev", _opts(tiny, part_size=100, decode="device"),
                      notify=lambda m: None)
    a, b = store.ClipIndex(tmp_path / "pil"), store.ClipIndex(tmp_path / "dev")
    assert b.table().column("path").to_pylist() == a.table().column("path").to_pylist()
    assert got.failed == ref.failed and got.images == ref.images
    marker = json.loads((tmp_path / "dev" / "parts" / "part-000000.json").read_text())
    assert sorted(f["path"] for f in marker["failures"]) == sorted(
        f["path"] for f in json.loads((tmp_path / "pil" / "parts" / "part-000000.json").read_text())["failures"])
    x, y = (np.concatenate(i.part_arrays()).astype(np.float32) for i in (a, b))
    assert float((x * y).sum(1).min()) > 0.99  # resized by torch instead of PIL: close, not identical
    png_row = b.table().column("path").to_pylist().index("0100png.jpg")
    np.testing.assert_array_equal(x[png_row], y[png_row])  # decoded by PIL in the worker: identical


def test_draft_decoding_keeps_the_model_input_covered(tmp_path: Path) -> None:
    from datakit.clip.loader import draft_size, open_rgb

    big = np.random.default_rng(4).integers(0, 256, (900, 1400, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=90)
    assert draft_size("pil", {"size": [224, 224]}) == 0 and draft_size("pil-draft", {"size": [224, 224]}) == 224
    with pytest.raises(InputError, match="decode mode"):
        draft_size("gpu", {"size": [224, 224]})
    assert draft_size("device", {"size": [224, 224]}) == 0
    assert open_rgb(str(tmp_path / "big.jpg"), "x").size == (1400, 900)
    small = open_rgb(str(tmp_path / "big.jpg"), "x", draft=224)
    assert small.mode == "RGB" and small.size == (350, 225)  # 1/4 scale: both sides still >= 224


def test_index_from_datakit_shards_matches_folder_index(tmp_path: Path, tiny: str, trees: dict[str, Path],
                                                        full_index: Path) -> None:
    from datakit.pipeline import BuildOptions, build
    from datakit.sources.imagefolder import folder_source as FolderSource

    shards = tmp_path / "shards"
    build(FolderSource(str(trees["imagenet"]), dataset="imagenet", classes=True), shards,
          opts=BuildOptions(shard_size=4, workers=1, progress=False, order="source"))
    spec = parse_input(f"imagenet={shards}")
    assert spec.kind == "shards"
    report = build_index([spec], tmp_path / "from_shards", _opts(tiny, workers=2), notify=lambda m: None)
    m = report.manifest
    assert m is not None and m["count"] == 10 and len(m["parts"]) == 3  # one part per shard
    got = store.ClipIndex(tmp_path / "from_shards")
    t = got.table().to_pydict()
    assert t["wnid"][0] == WNIDS[0] and t["path"][0] == f"{WNIDS[0]}/{WNIDS[0]}_0.JPEG"
    ref = store.ClipIndex(full_index)
    ref_rows = {p: i for i, p in enumerate(ref.table().column("path").to_pylist())}
    ref_emb, emb = np.concatenate(ref.part_arrays()), np.concatenate(got.part_arrays())
    for i, p in enumerate(t["path"]):
        np.testing.assert_array_equal(emb[i], ref_emb[ref_rows[p]])


def test_local_checkpoint_file_and_folder(tmp_path: Path, tiny: str, trees: dict[str, Path]) -> None:
    import torch

    base = load_model(ModelSpec(tiny, None), "cpu")
    with torch.no_grad():
        base.model.visual.proj.mul_(-1.0)  # weights that differ from the random init
    ckpt = tmp_path / "tiny.pt"
    torch.save(base.model.state_dict(), ckpt)
    from_file = load_model(ModelSpec(tiny, str(ckpt)), "cpu")
    assert from_file.identity["pretrained"] == "file:tiny.pt" and from_file.identity["checkpoint"]
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "open_clip_pytorch_model.bin").write_bytes(ckpt.read_bytes())
    from_dir = load_model(ModelSpec(tiny, str(folder)), "cpu")
    local = tmp_path / "localdir"
    local.mkdir()
    (local / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    (local / "open_clip_pytorch_model.bin").write_bytes(ckpt.read_bytes())
    from_local = load_model(ModelSpec(tiny, str(local)), "cpu")
    assert from_local.identity["name"].startswith("local-dir:")
    with Image.open(trees["pass"] / "0001abc.jpg") as img:
        x = base.transform(img.convert("RGB"))[None]
    want = encode_images(base, x)
    for m in (from_file, from_dir, from_local):
        np.testing.assert_array_equal(encode_images(m, x), want)
    assert not np.array_equal(encode_images(load_model(ModelSpec(tiny, None), "cpu"), x), want)
    with pytest.raises(InputError, match="neither a file"):
        load_model(ModelSpec(tiny, "no-such-tag"), "cpu")


def test_quickgelu_trap_and_missing_gpu() -> None:
    notes: list[str] = []
    assert _canonical_name("ViT-L-14-336", "openai", notes) == "ViT-L-14-336-quickgelu" and "QuickGELU" in notes[0]
    assert _canonical_name("ViT-L/14@336px", "openai", []) == "ViT-L-14-336-quickgelu"
    assert _canonical_name("ViT-B-32", "laion2b_s34b_b79k", []) == "ViT-B-32"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no GPU"):
            select_device("cuda")
        assert select_device("auto") == "cpu"


def test_cli_index_build_info_and_merge(tmp_path: Path, tiny: str, trees: dict[str, Path]) -> None:
    import typer
    from typer.testing import CliRunner

    from datakit.cli import clip as clip_cli

    app = typer.Typer()
    app.add_typer(clip_cli.app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps `index` a sub-command group
        pass

    runner = CliRunner()
    out = tmp_path / "cli_idx"
    args = ["index", f"pass={trees['pass']}", "--out", str(out), "--model", tiny, "--pretrained", "none",
            "--device", "cpu", "--workers", "0", "--part-size", "3", "--no-progress"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "index complete" in res.output and "6 images" in res.output
    res = runner.invoke(app, ["index", "info", str(out)])
    assert res.exit_code == 0 and "source pass (folder): 6 images" in res.output
    res = runner.invoke(app, ["index", "merge", str(out)])
    assert res.exit_code == 0 and "3 already there" in res.output
