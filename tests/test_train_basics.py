"""The trainer's mmseg/detectron2 basics on real demo shards and a tiny ViT: gradient accumulation and
clipping, EMA weights, last-N and best checkpoints, CPU bf16 autocast, and the TensorBoard check."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from datakit.errors import InputError
from datakit.pipeline import BuildOptions, build
from datakit.sources.demo import DemoSource
from datakit.train.checkpoint import load_checkpoint
from datakit.train.config import parse_config
from datakit.train.loop import RunOptions, Trainer, train

torch.set_num_threads(1)


def quiet(line: str) -> None:
    """Training log lines are not needed here."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    build(DemoSource(16), out, None, BuildOptions(shard_size=8, workers=1, progress=False))
    return out / "synthetic"


def config(data, out, optim=None, **train_keys):
    return parse_config({
        "data": [{"path": str(data)}],
        "model": {"backbone": "vit_tiny_patch16_224", "head": "linear", "options": {"depth": 1}},
        "optim": {"lr": 2e-3, "schedule": "constant", **(optim or {})},
        "train": {"out": str(out), "iterations": 2, "batch_size": 2, "crop": 32, "workers": 0, "log_every": 1,
                  **train_keys}})


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_accumulation_averages_the_micro_batch_gradients(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path / "run", accumulate=2), RunOptions(), quiet)
    feed = trainer.make_feed()
    first, second = next(iter(feed.loader)), None
    for i, batch in enumerate(feed.loader):
        if i == 1:
            second = batch
            break
    assert second is not None
    expected = []
    for batch in (first, second):
        trainer.model.zero_grad(set_to_none=True)
        loss, _ = trainer._micro(trainer.model, batch, feed)
        loss.backward()
        expected.append(grads(trainer.model))
    loss, _, _ = trainer.step(trainer.model, iter([first, second]), feed)
    got = grads(trainer.model)
    assert got.keys() == expected[0].keys() and got
    for name, g in got.items():
        torch.testing.assert_close(g, (expected[0][name] + expected[1][name]) / 2, rtol=1e-4, atol=1e-6)
    with pytest.raises(StopIteration):  # one step took both micro-batches
        trainer.step(trainer.model, iter([first]), feed)


def test_gradient_clipping_bounds_the_total_norm(demo, tmp_path):
    limit = 1e-3
    for clip, check in ((0.0, lambda n: n > 10 * limit), (limit, lambda n: n <= limit * 1.001)):
        trainer = Trainer(config(demo, tmp_path / f"run{clip}", optim={"clip_grad": clip}), RunOptions(), quiet)
        feed = trainer.make_feed()
        trainer.step(trainer.model, trainer.batches(feed), feed)
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads(trainer.model).values()]))
        assert check(float(norm)), (clip, float(norm))


def test_ema_follows_the_weights_with_its_decay(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path / "run", ema=0.75), RunOptions(), quiet)
    feed = trainer.make_feed()
    batches = trainer.batches(feed)
    trainer.step(trainer.model, batches, feed)
    after_one = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.ema is not None
    for k, v in after_one.items():
        torch.testing.assert_close(trainer.ema[k], v)  # the first step starts the average
    trainer.step(trainer.model, batches, feed)
    after_two = trainer.model.state_dict()
    moved = 0
    for k, v in after_two.items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(trainer.ema[k], 0.75 * after_one[k] + 0.25 * v)
            moved += int(not torch.equal(after_one[k], v))
    assert moved  # the weights did change, so the average is not trivially the weights
    evaluated = trainer.eval_model().state_dict()
    assert all(torch.equal(evaluated[k], trainer.ema[k]) for k in evaluated)


def test_keep_last_keeps_exactly_the_newest_checkpoints(demo, tmp_path):
    out = tmp_path / "run"
    train(config(demo, out, iterations=5, checkpoint_every=1, keep_last=2), log=quiet)
    kept = sorted(p.name for p in out.glob("checkpoint-*.pt"))
    assert kept == ["checkpoint-0000004.pt", "checkpoint-0000005.pt"]
    assert load_checkpoint(out / kept[0])["step"] == 4 and load_checkpoint(out / "checkpoint.pt")["step"] == 5


def test_best_checkpoint_holds_the_step_of_the_best_eval(demo, tmp_path):
    out = tmp_path / "run"
    train(config(demo, out, iterations=4, eval_every=1, eval_data=str(demo), save_best=True), log=quiet)
    evals = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines() if "eval_miou" in ln]
    assert [e["step"] for e in evals] == [1, 2, 3, 4]
    best = max(evals, key=lambda e: e["eval_miou"])  # the first of equal values wins, as with ">"
    state = load_checkpoint(out / "best.pt")
    assert state["step"] == best["step"]
    assert abs(state["best"] - best["eval_miou"]) < 1e-6


def test_save_best_without_evaluation_is_refused_up_front(demo, tmp_path):
    with pytest.raises(InputError, match="save_best needs"):
        config(demo, tmp_path / "run", save_best=True)


def test_cpu_bf16_autocast_runs_the_forward_in_bf16(demo, tmp_path):
    trainer = Trainer(config(demo, tmp_path / "run", amp=True, amp_dtype="bf16"), RunOptions(), quiet)
    assert trainer.device.type == "cpu" and trainer.use_amp and trainer.amp_dtype == torch.bfloat16
    seen: list[torch.dtype] = []
    trainer.model.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    feed = trainer.make_feed()
    loss, _, _ = trainer.step(trainer.model, trainer.batches(feed), feed)
    assert seen == [torch.bfloat16] and torch.isfinite(torch.tensor(loss))
    plain = Trainer(config(demo, tmp_path / "run2", amp=True), RunOptions(), quiet)
    assert not plain.use_amp  # "auto" keeps fp32 on CPU: autocast there only when bf16 is asked for


def test_tensorboard_gets_the_logged_losses_and_evals(demo, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the test extra; this environment lacks it")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(config(demo, out, iterations=3, eval_every=3, eval_data=str(demo), tensorboard=True), log=quiet)
    logged = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    losses = {e.step: e.value for e in events.Scalars("train/loss")}
    assert losses.keys() == {1, 2, 3}
    for rec in logged:
        if "loss" in rec:
            assert abs(losses[rec["step"]] - rec["loss"]) < 1e-5
    (miou,) = events.Scalars("eval/mIoU")
    assert miou.step == 3 and abs(miou.value - logged[-1]["eval_miou"]) < 1e-6
    assert {"train/lr", "train/iter_time", "train/data_time"} <= set(events.Tags()["scalars"])


def test_tensorboard_without_the_package_fails_before_step_one(demo, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(InputError, match="pip install tensorboard") as err:
        train(config(demo, tmp_path / "run", tensorboard=True), log=quiet)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_augmentation_is_configurable_seeded_and_leaves_masks_alone_under_photometric(demo, tmp_path):
    import numpy as np

    from datakit.train.augment import train_transform

    base = {"data": [{"path": str(demo)}], "model": {"backbone": "vit_tiny_patch16_224", "head": "linear"},
            "train": {"out": str(tmp_path / "run"), "crop": 32, "iterations": 1}}
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    mask = np.repeat(np.arange(8, dtype=np.uint8), 8)[None, :].repeat(48, 0)
    sample = {"image": image, "seg.png": mask}

    def run(aug, seed):
        cfg = parse_config({**base, "aug": aug})
        return train_transform(cfg, 255)(dict(sample), np.random.default_rng(seed))

    plain = [run({"ratio": [1.5, 1.5], "hflip": 0.0}, s) for s in range(6)]
    colour = [run({"ratio": [1.5, 1.5], "hflip": 0.0, "photometric": True}, s) for s in range(6)]
    for p, c in zip(plain, colour):
        assert p["image"].shape == c["image"].shape == (32, 32, 3)
        np.testing.assert_array_equal(p["seg.png"], c["seg.png"])  # photometric draws after the crop
        assert set(np.unique(p["seg.png"])) <= set(range(8))
    assert any(not np.array_equal(p["image"], c["image"]) for p, c in zip(plain, colour))
    again = run({"ratio": [1.5, 1.5], "hflip": 0.0, "photometric": True}, 3)
    np.testing.assert_array_equal(again["image"], colour[3]["image"])  # a pure function of the seed
    # ratio 1.5 on a 64-px-wide mask of 8-px bands: every crop column holds bands 12 px wide
    widths = [np.diff(np.flatnonzero(np.diff(p["seg.png"][0].astype(int)))) for p in plain]
    assert all(set(w.tolist()) <= {12} for w in widths if len(w))


def test_sync_batchnorm_replaces_every_batchnorm_only_for_multi_gpu_runs():
    from datakit.train.distributed import Dist, sync_batchnorm

    def model() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                   torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4)))

    def kinds(m: torch.nn.Module) -> list[str]:
        return [type(x).__name__ for x in m.modules() if "BatchNorm" in type(x).__name__]

    two, cuda = Dist(rank=0, world_size=2), torch.device("cuda", 0)
    assert kinds(sync_batchnorm(model(), two, cuda, True)) == ["SyncBatchNorm", "SyncBatchNorm"]
    assert kinds(sync_batchnorm(model(), two, cuda, False)) == ["BatchNorm2d", "BatchNorm2d"]
    assert kinds(sync_batchnorm(model(), Dist(), cuda, True)) == ["BatchNorm2d", "BatchNorm2d"]
    assert kinds(sync_batchnorm(model(), two, torch.device("cpu"), True)) == ["BatchNorm2d", "BatchNorm2d"]
