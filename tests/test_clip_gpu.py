"""The CLIP GPU paths on a real GPU (``pytest -m cuda``; skipped without CUDA). Their CPU twins, the same code on
CPU tensors, run everywhere (test_clip_topk, test_clip_index, test_clip_text)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from datakit.clip.embed import IndexOptions, build_index  # noqa: E402
from datakit.clip.images import parse_input  # noqa: E402
from datakit.clip.loader import split_transform  # noqa: E402
from datakit.clip.model import ModelSpec, encode_images, load_model, register_tiny_model  # noqa: E402
from datakit.clip.prompts import encode_texts, load_templates, prompts_of  # noqa: E402
from datakit.clip.store import ClipIndex  # noqa: E402
from datakit.clip.topk import SearchOptions, exact_topk, resident  # noqa: E402


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_resident_gpu_topk_sets_equal_the_numpy_cpu_result() -> None:
    rng = np.random.default_rng(0)
    x = _unit(rng, 300_000, 64).astype(np.float16)
    q = _unit(rng, 12, 64)
    parts = [x[s:s + 10_000] for s in range(0, len(x), 10_000)]
    cpu = exact_topk(q, parts, 200, SearchOptions(backend="numpy"))
    on_gpu = resident(parts, "cuda")
    assert on_gpu[0].is_cuda and on_gpu[0].dtype == torch.float16
    for block in (0, 65_536):  # default GPU blocks, and several blocks per search
        gpu = exact_topk(q, on_gpu, 200, SearchOptions(block_rows=block))
        for c in range(len(q)):
            assert set(gpu.rows[c].tolist()) == set(cpu.rows[c].tolist())
        np.testing.assert_allclose(gpu.scores, cpu.scores, atol=1e-5)
    streamed = exact_topk(q, parts, 200, SearchOptions(backend="torch", device="cuda"))  # host parts, GPU scoring
    np.testing.assert_array_equal(streamed.rows, gpu.rows)


def test_device_normalisation_on_gpu_equals_the_cpu_transform() -> None:
    from PIL import Image

    loaded = load_model(ModelSpec(register_tiny_model(), None), "cpu")
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    worker, norm = split_transform(loaded.transform)
    assert norm is not None
    on_gpu = norm(worker(img)[None], "cuda", torch.float32)
    np.testing.assert_allclose(on_gpu.cpu().numpy()[0], loaded.transform(img).numpy(), atol=1e-6)


def test_fp16_gpu_index_agrees_with_fp32_cpu(tmp_path: Path) -> None:
    from PIL import Image

    tiny = register_tiny_model()
    rng = np.random.default_rng(2)
    (tmp_path / "img").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (60 + i, 80, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i:03d}.jpg")
    rep = build_index([parse_input(str(tmp_path / "img"))], tmp_path / "gpu",
                      IndexOptions(ModelSpec(tiny, None), "cuda", batch_size=5, workers=2, progress=False),
                      notify=lambda m: None)
    assert rep.device.startswith("cuda") and rep.precision == "fp16" and rep.images == 12
    gpu = np.concatenate(list(ClipIndex(tmp_path / "gpu").part_arrays())).astype(np.float32)
    cpu_model = load_model(ModelSpec(tiny, None), "cpu")
    with Image.open(tmp_path / "img" / "000.jpg") as im:
        first = encode_images(cpu_model, cpu_model.transform(im.convert("RGB"))[None]).astype(np.float32)[0]
    assert float(gpu[0] @ first) / float(np.linalg.norm(gpu[0]) * np.linalg.norm(first)) >= 0.999


def test_device_decoding_with_nvjpeg_agrees_with_pil(tmp_path: Path) -> None:
    from PIL import Image

    tiny = register_tiny_model()
    rng = np.random.default_rng(3)
    (tmp_path / "img").mkdir()
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (70 + i, 90, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i:03d}.jpg")
    (tmp_path / "img" / "bad.jpg").write_bytes((tmp_path / "img" / "000.jpg").read_bytes()[:300])  # header, no data
    opts = IndexOptions(ModelSpec(tiny, None), "cuda", batch_size=4, workers=2, progress=False)
    pil = build_index([parse_input(str(tmp_path / "img"))], tmp_path / "pil", opts, notify=lambda m: None)
    dev = build_index([parse_input(str(tmp_path / "img"))], tmp_path / "dev",
                      IndexOptions(**{**opts.__dict__, "decode": "device"}), notify=lambda m: None)
    assert (dev.images, dev.failed) == (pil.images, pil.failed) == (10, 1)
    a = np.concatenate(list(ClipIndex(tmp_path / "pil").part_arrays())).astype(np.float32)
    b = np.concatenate(list(ClipIndex(tmp_path / "dev").part_arrays())).astype(np.float32)
    assert float((a * b).sum(1).min()) > 0.99


def test_cut_text_encoding_in_fp16_on_gpu_agrees_with_fp32_cpu() -> None:
    spec = ModelSpec(register_tiny_model(), None)
    prompts = prompts_of(["tench", "hair drier", "Yellow duck"], load_templates()[:30])
    gpu = encode_texts(load_model(spec, "cuda"), prompts)
    cpu = encode_texts(load_model(spec, "cpu"), prompts, cut=False)
    assert float((gpu * cpu).sum(1).min()) >= 0.999


def test_trainer_amp_step_on_gpu(tmp_path: Path) -> None:
    from datakit.pipeline import BuildOptions, build
    from datakit.sources.demo import DemoSource
    from datakit.train.config import parse_config
    from datakit.train.loop import train

    build(DemoSource(8), tmp_path / "demo", ["synthetic"], BuildOptions(shard_size=4, workers=1, progress=False))
    cfg = parse_config({"data": [{"path": str(tmp_path / "demo" / "synthetic")}],
                        "model": {"backbone": "vit_tiny_patch16_224", "head": "fcn", "head_channels": 16,
                                  "options": {"depth": 2}},
                        "train": {"out": str(tmp_path / "run"), "iterations": 3, "batch_size": 2, "crop": 64,
                                  "workers": 0, "device": "cuda", "amp": True}})
    result = train(cfg, log=lambda m: None)
    assert result.iterations == 3 and all(np.isfinite(result.losses))
