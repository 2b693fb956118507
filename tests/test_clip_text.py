"""Text side of ``retrieve``: length-cut batched prompt encoding, progress, and the category-embedding cache."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

pytest.importorskip("open_clip")

from datakit.clip import prompts, retrieve as retrieve_mod, text_cache  # noqa: E402
from datakit.clip.embed import IndexOptions, build_index  # noqa: E402
from datakit.clip.images import parse_input  # noqa: E402
from datakit.clip.model import ModelSpec, load_model, register_tiny_model  # noqa: E402
from datakit.clip.prompts import encode_texts, load_templates, prompts_of, text_embeddings  # noqa: E402
from datakit.clip.retrieve import RetrieveOptions, retrieve  # noqa: E402

CATS = ["tench", "Yellow duck", "tv", "hair drier", "a category name long enough to need many more tokens than the rest"]


@pytest.fixture(scope="module")
def loaded():  # type: ignore[no-untyped-def]
    return load_model(ModelSpec(register_tiny_model(), None), "cpu")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    base = tmp_path_factory.mktemp("text")
    rng = np.random.default_rng(1)
    (base / "img").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (32, 36, 3), dtype=np.uint8)).save(base / "img" / f"i{i}.jpg")
    opts = IndexOptions(model=ModelSpec(register_tiny_model(), None), device="cpu", workers=0, progress=False)
    build_index([parse_input(str(base / "img"))], base / "idx", opts, notify=lambda m: None)
    (base / "cats.txt").write_text("\n".join(CATS[:3]) + "\n")
    return base


def test_cut_batches_equal_full_context_encoding_in_input_order(loaded) -> None:  # type: ignore[no-untyped-def]
    texts = prompts_of(CATS, load_templates()[:9] + ["{}"])
    full = encode_texts(loaded, texts, batch_size=7, cut=False)
    done: list[int] = []
    cut = encode_texts(loaded, texts, batch_size=7, advance=done.append)
    assert cut.shape == (len(texts), loaded.dim) and cut.dtype == np.float32
    np.testing.assert_allclose(cut, full, atol=2e-6)  # same rows, same order
    assert sum(done) == len(texts) and len(done) == -(-len(texts) // 7)
    tokens = loaded.tokenizer(texts)
    ends = prompts._end_positions(loaded.model, tokens)
    assert ends is not None and int(ends.max()) < 40  # the cut is really taken: far below the 77-token context


def test_cut_is_not_taken_where_it_would_be_wrong(loaded, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    import torch

    tokens = loaded.tokenizer(["a photo of a tv."])
    m = loaded.model
    parts = {a: getattr(m, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")}
    tower = SimpleNamespace(**parts, attn_mask=m.attn_mask, text_pool_type="argmax")
    assert prompts._end_positions(tower, tokens) is not None
    tower.text_pool_type = "last"  # pools at the last position: padding matters
    assert prompts._end_positions(tower, tokens) is None
    tower.text_pool_type, tower.attn_mask = "argmax", torch.zeros_like(m.attn_mask)  # bidirectional: padding matters
    assert prompts._end_positions(tower, tokens) is None
    # a tower whose cut encoding disagrees with its own encode_text is caught by the one-prompt check
    monkeypatch.setattr(prompts, "_encode_cut", lambda model, t: torch.randn(t.shape[0], loaded.dim))
    texts = ["a photo of a tv.", "a photo of a dog."]
    np.testing.assert_allclose(encode_texts(loaded, texts), encode_texts(loaded, texts, cut=False), atol=1e-6)


def test_text_key_covers_model_templates_and_categories(tmp_path: Path) -> None:
    spec = ModelSpec("ViT-B-32", "openai")
    base = text_cache.text_key(spec, ["cat", "dog"], ["a {}."])
    assert base.digest == text_cache.text_key(spec, ["cat", "dog"], ["a {}."]).digest  # a pure function of its inputs
    others = [text_cache.text_key(spec, ["dog", "cat"], ["a {}."]), text_cache.text_key(spec, ["cat", "dog"], ["a {}!"]),
              text_cache.text_key(spec, ["cat", "dog", "cow"], ["a {}."]),
              text_cache.text_key(ModelSpec("ViT-B-32", "laion2b_s34b_b79k"), ["cat", "dog"], ["a {}."]),
              text_cache.text_key(ModelSpec("ViT-B-32", None), ["cat", "dog"], ["a {}."])]
    assert len({base.digest, *(o.digest for o in others)}) == 6
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"x" * 1000)
    a = text_cache.text_key(ModelSpec("ViT-B-32", str(ckpt)), ["cat"], ["{}"])
    ckpt.write_bytes(b"y" * 1000)  # same file name, other weights
    assert text_cache.text_key(ModelSpec("ViT-B-32", str(ckpt)), ["cat"], ["{}"]).digest != a.digest
    assert text_cache.resolve_dir("none") is None and text_cache.resolve_dir(str(tmp_path)) == tmp_path


def _fail_load(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the text tower was loaded although the cache holds these embeddings")


def test_second_retrieve_uses_the_cache_without_loading_the_text_tower(index: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    opts = RetrieveOptions(categories=str(index / "cats.txt"), n=3, device="cpu", text_cache=str(cache))
    first = retrieve([index / "idx"], tmp_path / "a", opts)
    assert first.text_from == "encoded" and len(list(cache.glob("*.npy"))) == 1 and len(list(cache.glob("*.json"))) == 1
    monkeypatch.setattr(retrieve_mod, "load_model", _fail_load)
    second = retrieve([index / "idx"], tmp_path / "b", opts)
    assert second.text_from == "cache" and second.report["text_embeddings"] == "cache"
    assert Path(second.json_path).read_text() == Path(first.json_path).read_text()
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "text_embeddings.npy"),
                                  np.load(tmp_path / "b" / "text_embeddings.npy"))
    # other templates or other categories are other entries: the (failing) text tower is needed again
    (tmp_path / "t.txt").write_text("a photo of a {}.\n")
    with pytest.raises(AssertionError, match="text tower was loaded"):
        retrieve([index / "idx"], tmp_path / "c", RetrieveOptions(**{**opts.__dict__, "templates": str(tmp_path / "t.txt")}))
    (tmp_path / "cats2.txt").write_text("tench\nYellow duck\n")
    with pytest.raises(AssertionError, match="text tower was loaded"):
        retrieve([index / "idx"], tmp_path / "d", RetrieveOptions(**{**opts.__dict__, "categories": str(tmp_path / "cats2.txt")}))
    with pytest.raises(AssertionError, match="text tower was loaded"):  # cache off
        retrieve([index / "idx"], tmp_path / "e", RetrieveOptions(**{**opts.__dict__, "text_cache": "none"}))


def test_a_stale_or_damaged_entry_is_never_used(index: Path, tmp_path: Path, loaded) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    opts = RetrieveOptions(categories=str(index / "cats.txt"), n=3, device="cpu", text_cache=str(cache))
    retrieve([index / "idx"], tmp_path / "a", opts)
    marker = next(cache.glob("*.json"))
    npy = marker.with_suffix(".npy")
    good = np.load(npy)
    expected = text_embeddings(loaded, CATS[:3], load_templates())
    np.testing.assert_allclose(good, expected, atol=1e-6)
    meta = json.loads(marker.read_text())
    key = text_cache.TextKey(meta["key"])
    assert text_cache.load(cache, key, loaded.dim) is not None
    # an entry whose recorded key differs (another category list hashed to this name) is a miss
    marker.write_text(json.dumps({**meta, "key": {**meta["key"], "categories": ["tench"]}}))
    assert text_cache.load(cache, key, loaded.dim) is None
    marker.write_text(json.dumps(meta))
    for bad in (good[:2], good.astype(np.float16), good * 2, np.full_like(good, np.nan)):
        np.save(npy, bad)
        assert text_cache.load(cache, key, loaded.dim) is None
    assert text_cache.load(cache, key, loaded.dim + 1) is None  # another embedding size
    np.save(npy, -good)  # plausible but wrong numbers: a rerun recomputes them and fixes the entry
    marker.unlink()
    res = retrieve([index / "idx"], tmp_path / "b", opts)
    assert res.text_from == "encoded"
    np.testing.assert_allclose(np.load(npy), expected, atol=1e-6)


def test_unwritable_cache_is_a_note_not_a_failure(index: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = retrieve([index / "idx"], tmp_path / "a", RetrieveOptions(categories=str(index / "cats.txt"), n=2, device="cpu",
                                                                   text_cache=str(blocker / "sub")))
    assert res.text_from == "encoded" and any("not cached" in n for n in res.notes)


def test_retrieve_prints_progress_for_prompts_and_search(index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAKIT_PROGRESS_INTERVAL", "0")
    retrieve([index / "idx"], tmp_path / "a", RetrieveOptions(categories=str(index / "cats.txt"), n=2, device="cpu",
                                                             text_cache="none"))
    err = capsys.readouterr().err
    assert "text prompts: 255/255 (100%)" in err  # 3 categories x 85 templates
    assert "search 3 categories: 6/6 (100%)" in err and "rows/s" in err
    retrieve([index / "idx"], tmp_path / "b", RetrieveOptions(categories=str(index / "cats.txt"), n=2, device="cpu",
                                                             text_cache="none", progress=False))
    assert "text prompts" not in capsys.readouterr().err
