"""Class-aware sampling (repeat factor, class-balanced), the class-set sidecar, and random access."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from datakit.errors import InputError
from datakit.shards.index import load_index
from datakit.stream import classes as classes_mod
from datakit.stream.access import SplitDataset
from datakit.stream.classes import class_sets, sidecar_path
from datakit.stream.dataset import ShardStream
from datakit.stream.sampling import SampledPlan, Sampling, repeat_factors
from test_stream_support import cell_sample, global_sequence, keys_of, simulate, write_split


def _label(uid: int) -> int:
    """A long tail: class 0 for 80 of 100 samples, classes 1..4 for 5 each."""
    return 0 if uid < 80 else 1 + (uid - 80) // 5


@pytest.fixture(scope="module")
def tail_split(tmp_path_factory):
    return load_index(write_split(tmp_path_factory.mktemp("tail"), [30, 30, 40], cls_of=_label, h=8, w=8))


def test_class_sets_of_a_cls_split_and_their_sidecar(tail_split, monkeypatch):
    sets = class_sets(tail_split, member="cls")
    assert [int(sets.of(i)[0]) for i in range(100)] == [_label(u) for u in range(100)]
    path = sidecar_path(tail_split)
    assert path.exists() and tail_split.fingerprint() in path.name and str(path.parent) == tail_split.base

    def no_pass(*args, **kwargs):
        raise AssertionError("the sidecar should have been used")

    monkeypatch.setattr(classes_mod, "compute_class_sets", no_pass)
    again = class_sets(tail_split, member="cls")
    assert np.array_equal(again.offsets, sets.offsets) and np.array_equal(again.classes, sets.classes)


def test_class_sets_of_a_mask_split_skip_the_ignore_id(tmp_path):
    index = load_index(write_split(tmp_path, [4, 3]))
    sets = class_sets(index)  # masks first
    for uid in range(7):
        expect = np.unique(cell_sample(uid)[1])
        assert np.array_equal(sets.of(uid), expect[expect != index.spec.ignore_id])


def test_repeat_factor_epochs_oversample_the_tail(tail_split):
    plan = SampledPlan(tail_split, Sampling("repeat_factor", threshold=0.2), sets=class_sets(tail_split, member="cls"))
    factors = repeat_factors(plan.sets, 0.2)
    assert factors[0] == 1.0 and factors[99] == pytest.approx(np.sqrt(0.2 / 0.05))  # 2.0
    assert plan.length == 80 + 20 * 2
    d = plan.draws(3, 0).sample
    assert len(d) == plan.length and np.array_equal(d, plan.draws(3, 0).sample)
    counts = Counter(d.tolist())
    assert all(counts[i] == 1 for i in range(80)) and all(counts[i] == 2 for i in range(80, 100))
    assert not np.array_equal(d, plan.draws(3, 1).sample)


def test_repeat_factor_fractions_keep_the_length(tail_split):
    plan = SampledPlan(tail_split, Sampling("repeat_factor", threshold=0.1), sets=class_sets(tail_split, member="cls"))
    lengths = {len(plan.draws(0, e).sample) for e in range(4)}
    assert lengths == {plan.length}  # sqrt(2) = 1.41 per tail sample: 80 + 20 + round(20 x 0.41) = 108
    assert plan.length == 108
    extra = [Counter(plan.draws(0, e).sample.tolist()) for e in range(4)]
    assert len({tuple(sorted(k for k, v in c.items() if v == 2)) for c in extra}) > 1  # which ones varies by epoch


def test_class_balanced_draws_classes_evenly_and_resumes(tail_split):
    sets = class_sets(tail_split, member="cls")
    plan = SampledPlan(tail_split, Sampling("class_balanced", length=2000), sets=sets)
    d = plan.draws(1, 0).sample
    per_class = Counter(_label(int(i)) for i in d)
    assert set(per_class) == {0, 1, 2, 3, 4} and min(per_class.values()) > 300  # ~400 each; natural: 1600 / 100
    identity = plan.identity()
    assert identity["total"] == 2000 and identity["order"]["sampling"]["kind"] == "class_balanced"

    small = SampledPlan(tail_split, Sampling("class_balanced", length=60), sets=sets)
    full = global_sequence(simulate(lambda r, w: ShardStream(small, 4, seed=2, rank=r, world_size=w), 1, 1))
    assert global_sequence(simulate(lambda r, w: ShardStream(small, 4, seed=2, rank=r, world_size=w), 3, 2)) == full
    first = ShardStream(small, 4, seed=2, rank=0, world_size=2)
    other = ShardStream(small, 4, seed=2, rank=1, world_size=2)
    taken = []
    a, b = iter(first), iter(other)
    for _ in range(3):
        taken += list(next(a)["__key__"]) + list(next(b)["__key__"])
    state = first.state_dict()
    resumed = ShardStream(small, 5, rank=0, world_size=1)  # another batch size and world size
    resumed.load_state_dict(state)
    assert taken + keys_of(resumed) == full


def test_sampling_rejects_bad_settings(tail_split):
    with pytest.raises(InputError, match="unknown sampling"):
        Sampling("focal")
    with pytest.raises(InputError, match="threshold"):
        Sampling(threshold=0)


def test_random_access_matches_the_stream(tmp_path):
    index = load_index(write_split(tmp_path, [4, 3, 6]))
    ds = SplitDataset(index)
    assert len(ds) == 13
    for i in (0, 3, 4, 12, -1):
        sample = ds[i]
        uid = i % 13
        assert sample["__key__"] == f"s{uid:05d}" and sample["__index__"] == uid
        assert np.array_equal(sample["seg.png"], cell_sample(uid)[1])
    with pytest.raises(IndexError):
        ds[13]
    import pickle

    clone = pickle.loads(pickle.dumps(ds))
    assert clone[5]["__key__"] == "s00005"
    import torch

    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=[12, 0, 7], num_workers=1)
    assert [s["__key__"] for s in loader] == ["s00012", "s00000", "s00007"]
