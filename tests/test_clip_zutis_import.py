"""``datakit index import-zutis`` on pickles written in ZUTIS's documented format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from datakit.clip import store  # noqa: E402
from datakit.clip.zutis_import import ImportOptions, import_zutis  # noqa: E402
from datakit.errors import InputError  # noqa: E402


def _zutis_pickle(path: Path, names: list[str], dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Like utils/extract_image_embeddings.py: {basename: float32 unit tensor}, pickled with pickle.dump."""
    rng = np.random.default_rng(seed)
    vecs = {}
    for n in names:
        v = rng.standard_normal(dim).astype(np.float32)
        vecs[n] = v / np.linalg.norm(v)
    with open(path, "wb") as f:
        pickle.dump({n: torch.from_numpy(v.copy()) for n, v in vecs.items()}, f)
    return vecs


def test_import_imagenet_pickle(tmp_path: Path) -> None:
    names = [f"n01440764_{i}.JPEG" for i in range(5)] + [f"n09999999_{i}.JPEG" for i in range(4)]
    vecs = _zutis_pickle(tmp_path / "filename_to_ViT_L_14_336px_train_img_embedding.pkl", names, 768)
    report = import_zutis(tmp_path / "filename_to_ViT_L_14_336px_train_img_embedding.pkl", tmp_path / "idx",
                          ImportOptions(image_root="/data/ImageNet2012/train", part_size=4))
    m = report.manifest
    assert m is not None and m["count"] == 9 and len(m["parts"]) == 3 and m["kind"] == "zutis-import"
    assert m["model"]["name"] == "ViT-L-14-336-quickgelu" and m["model"]["pretrained"] == "openai"
    assert m["model"]["preprocess"]["size"] == [336, 336] and m["model"]["preprocess"]["interpolation"] == "bicubic"
    assert m["sources"] == [{"name": "imagenet", "kind": "zutis-import", "root": "/data/ImageNet2012/train",
                             "file": "filename_to_ViT_L_14_336px_train_img_embedding.pkl", "count": 9}]
    idx = store.ClipIndex(tmp_path / "idx")
    emb = np.concatenate(idx.part_arrays())
    assert emb.dtype == np.float16 and emb.shape == (9, 768)
    np.testing.assert_array_equal(emb, np.stack([vecs[n] for n in names]).astype(np.float16))  # file order kept
    t = idx.table().to_pydict()
    assert t["key"][0] == "n01440764_0" and t["path"][0] == "n01440764/n01440764_0.JPEG" and t["wnid"][0] == "n01440764"
    assert t["wnid"][5] == "n09999999" and t["part"] == [0, 0, 0, 0, 1, 1, 1, 1, 2]


def test_import_pass_pickle_and_cli(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from datakit.cli import clip as clip_cli

    names = [f"{i:08x}.jpg" for i in range(6)]
    pkl = tmp_path / "filename_to_ViT_L_14_336px_img_embedding.pkl"
    _zutis_pickle(pkl, names, 768, seed=1)
    app = typer.Typer()
    app.add_typer(clip_cli.app)
    res = CliRunner().invoke(app, ["index", "import-zutis", str(pkl), "--out", str(tmp_path / "pass_idx")])
    assert res.exit_code == 0, res.output
    assert "imported 6 embeddings" in res.output and "source pass" in res.output
    t = store.ClipIndex(tmp_path / "pass_idx").table().to_pydict()
    assert t["path"] == names and t["wnid"] == [None] * 6 and t["source"] == ["pass"] * 6


def test_hostile_or_malformed_pickles_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"a.jpg": Evil()}))
    with pytest.raises(InputError, match="refusing"):
        import_zutis(bad, tmp_path / "x")
    assert not marker.exists()
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(InputError, match="dict"):
        import_zutis(tmp_path / "list.pkl", tmp_path / "y")
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps({"a.jpg": np.ones(4, np.float32)})[:-5])
    with pytest.raises(InputError):
        import_zutis(tmp_path / "trunc.pkl", tmp_path / "z")
    mixed = tmp_path / "mixed.pkl"
    mixed.write_bytes(pickle.dumps({"a.jpg": np.ones(768, np.float32), "b.jpg": np.ones(512, np.float32)}))
    with pytest.raises(InputError, match="sizes"):
        import_zutis(mixed, tmp_path / "w")
