"""``datakit retrieve``: category lists, prompt ensembling, exact answers, ZUTIS JSON, report, sheets, shards."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("open_clip")

from datakit.clip import store  # noqa: E402
from datakit.clip.embed import IndexOptions, build_index  # noqa: E402
from datakit.clip.images import parse_input  # noqa: E402
from datakit.clip.model import ModelSpec, load_model, register_tiny_model  # noqa: E402
from datakit.clip.prompts import encode_texts, ensemble, load_categories, load_templates, text_embeddings  # noqa: E402
from datakit.clip.retrieve import RetrieveOptions, retrieve  # noqa: E402
from datakit.errors import InputError  # noqa: E402

CATS = ["tench", "Yellow duck", "tv"]


@pytest.fixture(scope="module", autouse=True)
def _own_text_cache(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Category embeddings are cached in a folder of this module, not in the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATAKIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def tiny() -> str:
    return register_tiny_model()


@pytest.fixture(scope="module")
def loaded(tiny: str):  # type: ignore[no-untyped-def]
    return load_model(ModelSpec(tiny, None), "cpu")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, tiny: str) -> dict[str, Path]:
    """Two tiny indexes (ImageNet-style and PASS-style folders) and a category file."""
    base = tmp_path_factory.mktemp("retrieve")
    rng = np.random.default_rng(5)
    imagenet = base / "in" / "train"
    for wnid in ("n01440764", "n01443537"):
        (imagenet / wnid).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 44 + i, 3), dtype=np.uint8)).save(imagenet / wnid / f"{wnid}_{i}.JPEG")
    pas = base / "pass_images"
    pas.mkdir()
    for i in range(6):
        Image.fromarray(np.full((30, 30 + i, 3), 40 * i, np.uint8)).save(pas / f"p{i}.jpg")
    opts = IndexOptions(model=ModelSpec(tiny, None), device="cpu", workers=0, part_size=4, progress=False)
    build_index([parse_input(str(imagenet))], base / "idx_in", opts, notify=lambda m: None)
    build_index([parse_input(f"pass={pas}")], base / "idx_pass", opts, notify=lambda m: None)
    (base / "cats.txt").write_text("background\n" + "\n".join(CATS) + "\n")
    return {"base": base, "imagenet": imagenet, "pass": pas, "in": base / "idx_in", "pass_idx": base / "idx_pass",
            "cats": base / "cats.txt"}


def test_category_sets_and_templates(tmp_path: Path) -> None:
    sizes = {"coco80": 80, "coca80": 80, "voc20": 20, "ade150": 150, "ade847": 847, "cocostuff171": 171,
             "imagenets50": 50, "imagenets300": 300, "imagenets919": 919}
    for name, n in sizes.items():
        names = load_categories(name)
        assert len(names) == n and "background" not in names, name
    assert load_categories("coco80")[:3] == ["person", "bicycle", "car"]
    assert load_categories("voc20")[0] == "aeroplane"
    assert "Yellow duck" in load_categories("coca80")  # verbatim, case kept
    templates = load_templates()
    assert len(templates) == 85 and templates[0] == "a bad photo of a {}." and templates[-1] == "this is one {} in the scene."
    (tmp_path / "c.json").write_text(json.dumps(["background", "cat", "dog"]))
    assert load_categories(str(tmp_path / "c.json")) == ["cat", "dog"]
    (tmp_path / "dup.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(InputError, match="duplicate"):
        load_categories(str(tmp_path / "dup.txt"))
    with pytest.raises(InputError, match="neither"):
        load_categories("coco81")
    (tmp_path / "t.txt").write_text("a photo of {}\nno slot here\n")
    with pytest.raises(InputError, match="exactly one"):
        load_templates(str(tmp_path / "t.txt"))


def test_prompt_ensemble_is_normalise_mean_normalise(loaded) -> None:  # type: ignore[no-untyped-def]
    templates = ["a photo of a {}.", "there is a {} in the scene.", "art of the {}."]
    got = text_embeddings(loaded, CATS, templates)
    raw = encode_texts(loaded, [t.format(c) for c in CATS for t in templates])  # unit rows
    for c in range(len(CATS)):
        mean = raw[c * 3:(c + 1) * 3].mean(axis=0)
        np.testing.assert_allclose(got[c], mean / np.linalg.norm(mean), atol=1e-6)
    x = np.array([[3.0, 0.0], [0.0, 1.0]], np.float32)  # unnormalised prompts count equally
    np.testing.assert_allclose(ensemble(x, 1, 2)[0], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)


def _synthetic_index(out: Path, identity: dict, emb: np.ndarray, source: str) -> None:
    units = [{"source": source, "kind": "folder", "first": "0", "count": len(emb), "sha": "synthetic"}]
    plan = store.make_plan(identity, [{"name": source, "kind": "folder", "root": f"/data/{source}"}], units)
    out.mkdir(parents=True)
    store.atomic_write_json(out / store.PLAN, plan)
    keys = [f"img{i:03d}" for i in range(len(emb))]
    store.write_part(out, store.PartRows(0, emb.astype(np.float16), keys, [source] * len(emb),
                                         [f"{k}.jpg" for k in keys], [None] * len(emb)), plan, [])
    assert store.finalize(out, plan) is not None


def test_exact_retrieval_on_planted_embeddings(tmp_path: Path, loaded, tiny: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "cats.txt").write_text("\n".join(CATS))
    queries = text_embeddings(loaded, CATS, load_templates())
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((120, loaded.dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[[42, 5, 17]] = queries[0]  # three identical perfect matches for "tench"
    emb[90] = queries[1]  # the random text tower makes all names alike (cos ~0.97): plant an exact match
    a, b = emb[:60], emb[60:].copy()
    b[3] = a[5]  # the same vector in the second index ties with row 5 of the first
    _synthetic_index(tmp_path / "A", loaded.identity, a, "imagenet")
    _synthetic_index(tmp_path / "B", loaded.identity, b, "pass")
    res = retrieve([tmp_path / "A", tmp_path / "B"], tmp_path / "out",
                   RetrieveOptions(categories=str(tmp_path / "cats.txt"), n=10, model=ModelSpec(tiny, None), device="cpu"))
    got = json.loads(Path(res.json_path).read_text())
    assert list(got) == CATS
    assert got["tench"][:4] == ["/data/imagenet/img005.jpg", "/data/imagenet/img017.jpg", "/data/imagenet/img042.jpg",
                                "/data/pass/img003.jpg"]  # ties: lower pooled row first, first index before second
    assert got["Yellow duck"][0] == "/data/pass/img030.jpg"
    pooled = np.concatenate([a, b]).astype(np.float16).astype(np.float32)
    scores = queries @ pooled.T
    names = [f"/data/imagenet/img{i:03d}.jpg" for i in range(60)] + [f"/data/pass/img{i:03d}.jpg" for i in range(60)]
    for c, cat in enumerate(CATS):
        order = np.lexsort((np.arange(120), -np.round(scores[c], 5)))[:10]
        assert set(got[cat]) == {names[i] for i in order}


@pytest.fixture(scope="module")
def outputs(work: dict[str, Path], tiny: str):  # type: ignore[no-untyped-def]
    out = work["base"] / "out_none"
    opts = RetrieveOptions(categories=str(work["cats"]), n=5, model=None, device="cpu", show=4,
                           path_roots=(("imagenet", "/data/ImageNet2012/train"), ("pass", "/data/pass/images")),
                           shards=str(work["base"] / "shards"))
    return out, retrieve([work["in"], work["pass_idx"]], out, opts)


def test_zutis_json_parquet_and_report(outputs, work: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    out, res = outputs
    path = out / "category_to_p_images_n5.json"
    got = json.loads(path.read_text())
    assert list(got) == CATS and all(len(v) == 5 for v in got.values())
    assert all(p.startswith(("/data/ImageNet2012/train/n0144", "/data/pass/images/p")) for v in got.values() for p in v)
    assert res.report["zutis_paths_ok"] is True
    table = pq.read_table(out / "retrieval.parquet").to_pydict()
    assert table["rank"][:5] == [1, 2, 3, 4, 5] and table["label"][:5] == [1] * 5
    assert table["path"][:5] == got["tench"]
    # scores are the dot products of the saved text embeddings with the stored image embeddings
    text = np.load(out / "text_embeddings.npy")
    idx = [store.ClipIndex(work["in"]), store.ClipIndex(work["pass_idx"])]
    embs = [np.concatenate(i.part_arrays()).astype(np.float32) for i in idx]
    for i in range(len(table["rank"])):
        e = embs[table["index"][i]][table["row"][i]]
        assert table["score"][i] == pytest.approx(float(text[table["label"][i] - 1] @ e), abs=1e-5)
    full = np.concatenate(embs) @ text.T
    assert table["score"][0] == pytest.approx(float(full[:, 0].max()), abs=1e-6)
    rep = json.loads((out / "report.json").read_text())
    assert rep["unique_images"] + sum(c["shared"] for c in rep["per_category"]) >= 15
    assert rep["pooled_images"] == 16 and len(rep["per_category"]) == 3
    assert "Per category" in (out / "report.md").read_text()
    with Image.open(res.sheets[0]) as sheet:
        assert sheet.size[0] == 2 * 160 and Path(res.sheets[0]).name == "001_tench.png"


def test_shards_output_is_readable_and_labelled(outputs, work: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    from datakit.shards.index import load_index
    from datakit.shards.tario import iter_samples

    out, res = outputs
    index = load_index(work["base"] / "shards" / "train")
    assert [e.name for e in index.spec.classes.entries] == ["background", *CATS]
    assert index.total == res.report["unique_images"]
    got = json.loads((out / "category_to_p_images_n5.json").read_text())
    labels = {}
    for entry in index.shards:
        with open(index.shard_path(entry), "rb") as f:
            for s in iter_samples(f, entry.url):
                meta = json.loads(s["json"])
                Image.open(io.BytesIO(s["jpg"])).verify()
                labels[meta["path"]] = (int(s["cls"]), meta["retrieved_by"])
    for cat in CATS:
        for p in got[cat]:
            rel = p.split("/train/")[-1] if "/train/" in p else p.split("/images/")[-1]
            label, by = labels[rel]
            assert cat in [b["category"] for b in by]
            assert label == max(CATS.index(b["category"]) for b in by) + 1  # ZUTIS: last category wins


def test_dedup_best_and_pool_smaller_than_n(work: dict[str, Path], tmp_path: Path) -> None:
    res = retrieve([work["in"], work["pass_idx"]], tmp_path / "best",
                   RetrieveOptions(categories=str(work["cats"]), n=5, device="cpu", dedup="best"))
    got = json.loads(Path(res.json_path).read_text())
    flat = [p for v in got.values() for p in v]
    assert len(flat) == len(set(flat))  # each image in one list; lists may run short of candidates
    assert [c["short"] for c in res.report["per_category"]] == [int(len(v) < 5) for v in got.values()]
    res = retrieve([work["in"], work["pass_idx"]], tmp_path / "best4",
                   RetrieveOptions(categories=str(work["cats"]), n=5, device="cpu", dedup="best", dedup_pool=4))
    flat = [p for v in json.loads(Path(res.json_path).read_text()).values() for p in v]
    assert len(flat) == len(set(flat)) == 15
    res = retrieve([work["in"]], tmp_path / "big", RetrieveOptions(categories=str(work["cats"]), n=50, device="cpu"))
    got = json.loads((tmp_path / "big" / "category_to_p_images_n50.json").read_text())
    assert all(len(v) == 10 for v in got.values())
    assert got["tench"][0].startswith(str(work["imagenet"]))  # no --path-root: where the files were indexed
    assert res.report["zutis_paths_ok"] is False and "--path-root" in res.notes[-1]


def test_bad_retrieve_inputs(work: dict[str, Path], tmp_path: Path) -> None:
    cats = str(work["cats"])
    with pytest.raises(InputError, match="unknown source"):
        retrieve([work["in"]], tmp_path / "o", RetrieveOptions(categories=cats, path_roots=(("pas", "/x"),)))
    with pytest.raises(InputError, match="no complete CLIP index"):
        retrieve([tmp_path], tmp_path / "o", RetrieveOptions(categories=cats))
    with pytest.raises(InputError):
        retrieve([work["in"]], tmp_path / "o", RetrieveOptions(categories=cats, dedup="first"))


def test_imported_pickle_retrieves_like_the_original(work: dict[str, Path], tmp_path: Path, tiny: str) -> None:
    import torch

    from datakit.clip.zutis_import import ImportOptions, import_zutis

    idx = store.ClipIndex(work["pass_idx"])
    emb = np.concatenate(idx.part_arrays()).astype(np.float32)
    names = idx.table().column("path").to_pylist()
    with open(tmp_path / "emb.pkl", "wb") as f:
        pickle.dump({n: torch.from_numpy(emb[i].copy()) for i, n in enumerate(names)}, f)
    import_zutis(tmp_path / "emb.pkl", tmp_path / "imported",
                 ImportOptions(source="pass", image_root=str(work["pass"]), model=tiny, pretrained=None))
    opts = RetrieveOptions(categories=str(work["cats"]), n=3, device="cpu")
    a = retrieve([work["pass_idx"]], tmp_path / "ra", opts)
    b = retrieve([tmp_path / "imported"], tmp_path / "rb", opts)
    assert Path(a.json_path).read_text() == Path(b.json_path).read_text()


def test_cli_retrieve(work: dict[str, Path], tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from datakit.cli import clip as clip_cli

    app = typer.Typer()
    app.add_typer(clip_cli.app)
    res = CliRunner().invoke(app, ["retrieve", "--categories", str(work["cats"]), "--index", str(work["in"]),
                                   "--index", str(work["pass_idx"]), "--n", "3", "--out", str(tmp_path / "cli"),
                                   "--path-root", "imagenet=/data/ImageNet2012/train", "--path-root", "pass=/data/pass/images",
                                   "--device", "cpu", "--backend", "numpy"])
    assert res.exit_code == 0, res.output
    assert "3 categories x top-3 from 16 images" in res.output
    assert list(json.loads((tmp_path / "cli" / "category_to_p_images_n3.json").read_text())) == CATS
    res = CliRunner().invoke(app, ["retrieve", "--categories", str(work["cats"]), "--index", str(work["in"]),
                                   "--out", str(tmp_path / "cli2"), "--path-root", "nocolon"])
    assert res.exit_code != 0


def test_retrieve_from_a_shard_index_pulls_images_out_of_shards(work: dict[str, Path], tmp_path: Path, tiny: str) -> None:
    from datakit.pipeline import BuildOptions, build
    from datakit.shards.index import load_index
    from datakit.sources.imagefolder import folder_source as FolderSource

    shards = tmp_path / "in_shards"
    build(FolderSource(str(work["imagenet"]), dataset="imagenet", classes=True), shards,
          opts=BuildOptions(shard_size=3, workers=1, progress=False))
    opts = IndexOptions(model=ModelSpec(tiny, None), device="cpu", workers=0, progress=False)
    build_index([parse_input(f"imagenet={shards}")], tmp_path / "idx", opts, notify=lambda m: None)
    res = retrieve([tmp_path / "idx"], tmp_path / "out",
                   RetrieveOptions(categories=str(work["cats"]), n=4, device="cpu", show=4,
                                   path_roots=(("imagenet", "/data/ImageNet2012/train"),), shards=str(tmp_path / "sh")))
    got = json.loads(Path(res.json_path).read_text())
    assert got["tench"][0].startswith("/data/ImageNet2012/train/n0144") and res.report["zutis_paths_ok"]
    out_index = load_index(tmp_path / "sh" / "train")
    assert out_index.total == res.report["unique_images"] and not out_index.failures
    with Image.open(res.sheets[0]) as sheet:  # tiles hold the real images, not the dark "missing" tile
        tile = np.asarray(sheet.convert("RGB"))[24:24 + 160, :160]
        assert tile.std() > 20
    assert not (tmp_path / "out" / ".scratch").exists()
