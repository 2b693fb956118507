"""Weighted mixes (pixel labels + image labels, as in LarvSeg): proportions, determinism, batches, resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from datakit.errors import InputError
from datakit.shards.index import load_index
from datakit.stream.dataset import ShardStream, StreamOptions
from datakit.stream.mix import MixPlan, MixSource, apportion, mix_loader
from datakit.stream.transforms import LabelToMask
from test_stream_support import IGNORE, global_sequence, keys_of, simulate, write_image_only, write_split


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    pixel = load_index(write_split(root / "pixel", [7, 5, 9]))  # 21 samples, keys s*
    image = load_index(write_image_only(root / "image", [30, 25, 45]))  # 100 samples, keys i*
    return pixel, image


def test_apportion_is_exact_and_fair():
    assert apportion(10, [1, 1]) == [5, 5]
    assert apportion(10, [2, 1]) == [7, 3]
    assert sum(apportion(1001, [0.3, 0.5, 0.2])) == 1001
    with pytest.raises(InputError):
        apportion(10, [0, 0])


def test_weights_hold_per_window_and_draws_are_deterministic(sources):
    pixel, image = sources
    plan = MixPlan([MixSource(pixel, 1.0), MixSource(image, 3.0)], length=400)
    a, b = plan.draws(5, 0), MixPlan([MixSource(pixel, 1.0), MixSource(image, 3.0)], length=400).draws(5, 0)
    assert np.array_equal(a.source, b.source) and np.array_equal(a.sample, b.sample)
    assert Counter(a.source.tolist()) == {0: 100, 1: 300}  # exact per epoch
    for start in range(0, 400, 100):  # and roughly right in every window
        share = (a.source[start : start + 100] == 0).mean()
        assert 0.1 < share < 0.4
    assert not np.array_equal(a.source, plan.draws(5, 1).source)


def test_small_source_cycles_through_whole_epochs(sources):
    pixel, image = sources
    plan = MixPlan([MixSource(pixel, 1.0), MixSource(image, 1.0)], length=84)  # 42 draws of a 21-sample split
    for epoch in range(3):
        d = plan.draws(0, epoch)
        ids = d.sample[d.source == 0]
        assert Counter(ids.tolist()) == Counter(list(range(21)) * 2)  # each pixel sample twice per mix epoch
    d0, d1 = plan.draws(0, 0), plan.draws(0, 1)
    # the image source continues: 42 draws per mix epoch walk through its 100 samples without repeats
    seen = np.concatenate([d0.sample[d0.source == 1], d1.sample[d1.source == 1]])
    assert len(set(seen.tolist())) == 84


def test_mixed_batches_across_ranks_are_exact_and_topology_free(sources):
    pixel, image = sources
    plan = MixPlan([MixSource(pixel, 1.0, LabelToMask(mode="ignore", ignore=IGNORE)),
                    MixSource(image, 1.0, LabelToMask(mode="class", ignore=IGNORE))], length=60)
    one = global_sequence(simulate(lambda r, w: ShardStream(plan, 5, seed=2, rank=r, world_size=w), 1, 1))
    many = simulate(lambda r, w: ShardStream(plan, 5, seed=2, rank=r, world_size=w), 2, 3)
    assert global_sequence(many) == one and len(one) == 60
    assert len(many[0]) == len(many[1]) == 6
    assert Counter(k[0] for k in one) == {"s": 30, "i": 30}
    batch = next(iter(ShardStream(plan, 12, seed=2, rank=0, world_size=1)))
    assert batch["seg.png"].shape[0] == 12  # every sample has a label map: real, or made from its class
    for key, src, m, cls in zip(batch["__key__"], batch["__source__"], batch["seg.png"], batch["cls"]):
        if key.startswith("i"):
            assert int(src) == 1 and (m == int(cls)).all()


def test_per_source_batches_are_homogeneous(sources):
    pixel, image = sources
    dl = mix_loader([MixSource(pixel, 1.0), MixSource(image, 2.0)], 4, per_source=True, length=120,
                    seed=3, rank=0, world_size=1, num_workers=0)
    batches = list(dl)
    assert len(batches) == 30
    kinds = [set(k[0] for k in b["__key__"]) for b in batches]
    assert all(len(k) == 1 for k in kinds)
    assert Counter(next(iter(k)) for k in kinds) == {"s": 10, "i": 20}
    with pytest.raises(InputError, match="per-source"):
        mix_loader([MixSource(pixel), MixSource(image)], 4, per_source=True, rank=0, world_size=1,
                   options=StreamOptions(tail="exact"))


def test_mix_resume_after_changing_ranks(sources):
    pixel, image = sources
    plan = MixPlan([MixSource(pixel, 1.0), MixSource(image, 1.0)], length=50)
    streams = [ShardStream(plan, 3, seed=1, rank=r, world_size=2) for r in range(2)]
    iters = [iter(s) for s in streams]
    taken = [k for _ in range(4) for it in iters for k in next(it)["__key__"]]
    state = streams[0].state_dict()
    rest = global_sequence(simulate(lambda r, w: _load(plan, r, w, state), 3, 2))
    full = global_sequence(simulate(lambda r, w: ShardStream(plan, 3, seed=1, rank=r, world_size=w), 1, 1))
    assert taken + rest == full
    other = MixPlan([MixSource(pixel, 1.0), MixSource(image, 2.0)], length=50)
    with pytest.raises(InputError, match="another dataset"):
        _load(other, 0, 1, state)


def _load(plan, rank, world, state):
    s = ShardStream(plan, 3, rank=rank, world_size=world)
    s.load_state_dict(state)
    return s


def test_mix_loader_with_workers(sources):
    pixel, image = sources
    dl = mix_loader([MixSource(pixel, 1.0), MixSource(image, 1.0)], 5, length=40, seed=4, rank=0, world_size=1,
                    num_workers=2)
    keys = keys_of(dl)
    expect = global_sequence(simulate(lambda r, w: ShardStream(
        MixPlan([MixSource(pixel, 1.0), MixSource(image, 1.0)], length=40), 5, seed=4, rank=r, world_size=w), 1, 1))
    assert keys == expect


def test_collate_columns():
    from datakit.stream.collate import collate

    a = {"__key__": "a", "image": np.zeros((4, 5, 3), np.uint8), "seg.png": np.full((4, 5), 700, np.uint16), "cls": 3}
    b = {"__key__": "b", "image": np.ones((4, 5, 3), np.uint8), "cls": 4}  # an image-level sample: no mask
    c = {"__key__": "c", "image": np.ones((6, 5, 3), np.uint8), "seg.png": np.zeros((6, 5), np.uint16), "cls": 5}
    batch = collate([a, b])
    assert batch["image"].shape == (2, 4, 5, 3) and batch["cls"].tolist() == [3, 4]
    assert batch["seg.png"][1] is None and batch["seg.png"][0].dtype == np.uint16
    assert int(batch["seg.png"][0][0, 0]) == 700
    mixed = collate([a, c])
    assert isinstance(mixed["image"], list) and [x.shape for x in mixed["image"]] == [(4, 5, 3), (6, 5, 3)]
    assert mixed["__key__"] == ["a", "c"]
