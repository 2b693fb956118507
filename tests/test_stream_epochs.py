"""Exact epochs, topology-independent order and elastic resume, on real shards of unequal sizes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from datakit.errors import InputError
from datakit.shards.index import load_index
from datakit.stream import Shuffle, epoch_order, rank_batches
from datakit.stream.dataset import ShardStream, StreamOptions, loader
from datakit.stream.order import space_of
from datakit.stream.partition import consumed_after, global_steps
from test_stream_support import global_sequence, keys_of, simulate, write_split

SIZES = [5, 3, 8, 1, 7, 13, 2]  # 39 samples, unequal shards


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return load_index(write_split(tmp_path_factory.mktemp("epochs"), SIZES))


@pytest.fixture(scope="module")
def all_keys(index):
    return sorted(f"s{u:05d}" for u in range(index.total))


def stream_factory(index, batch, seed=3, epoch=0, tail="exact", shuffle=Shuffle()):
    opts = StreamOptions(tail=tail, shuffle=shuffle)
    return lambda r, world: ShardStream(index, batch, seed=seed, epoch=epoch, rank=r, world_size=world, options=opts)


@pytest.mark.parametrize("mode", ["none", "shards", "window", "global"])
def test_order_is_a_pure_permutation_of_seed_and_epoch(mode):
    space = space_of(SIZES)
    shuffle = Shuffle(mode, window=6 if mode == "window" else None)
    a = epoch_order(space, shuffle, seed=7, epoch=2)
    assert sorted(a.tolist()) == list(range(space.total))
    assert np.array_equal(a, epoch_order(space, shuffle, seed=7, epoch=2))
    if mode != "none":
        assert not np.array_equal(a, epoch_order(space, shuffle, seed=7, epoch=3))
        assert not np.array_equal(a, epoch_order(space, shuffle, seed=8, epoch=2))


def test_auto_shuffle_is_global_for_local_files_and_windowed_for_remote():
    assert Shuffle().resolve(["/data/a.tar", "file:///data/b.tar"]) == Shuffle("global")
    assert Shuffle().resolve(["/data/a.tar", "s3://bucket/b.tar"]) == Shuffle("window")
    assert Shuffle("shards").resolve(["s3://bucket/b.tar"]) == Shuffle("shards")
    with pytest.raises(InputError, match="unknown shuffle mode"):
        Shuffle("random")


def test_shard_mode_keeps_shards_contiguous():
    space = space_of(SIZES)
    order = epoch_order(space, Shuffle("shards"), seed=1, epoch=0)
    shard, local = space.locate(order)
    runs = [s for i, s in enumerate(shard.tolist()) if i == 0 or s != shard[i - 1]]
    assert sorted(runs) == list(range(len(SIZES)))  # each shard appears as one run
    for s in range(len(SIZES)):
        assert local[shard == s].tolist() == list(range(SIZES[s]))


def test_window_mode_moves_samples_at_most_a_window():
    space = space_of([100] * 10)
    window = 50
    order = epoch_order(space, Shuffle("window", window), seed=0, epoch=0)
    base = epoch_order(space, Shuffle("shards"), seed=0, epoch=0)  # the same shard permutation
    where = {int(g): i for i, g in enumerate(order)}
    moves = [where[int(g)] - i for i, g in enumerate(base)]
    assert max(abs(m) for m in moves) <= window
    assert np.mean(np.abs(moves)) > window / 10  # it does mix


@pytest.mark.parametrize("ranks,workers", [(1, 1), (1, 3), (2, 2), (3, 4), (4, 4)])
@pytest.mark.parametrize("tail", ["exact", "pad", "drop"])
def test_partition_covers_once_with_equal_batch_counts(ranks, workers, tail):
    total, batch = 39, 2
    spans = {r: rank_batches(total, 0, batch, ranks, r, tail) for r in range(ranks)}
    assert len({len(v) for v in spans.values()}) == 1
    seen = Counter(p % total for v in spans.values() for a, b in v for p in range(a, b))
    if tail == "exact":
        assert seen == Counter(range(total))
    elif tail == "drop":
        step = batch * ranks
        assert sorted(seen) == list(range(total // step * step)) and set(seen.values()) == {1}
    else:
        assert set(seen) == set(range(total)) and sum(seen.values()) % (batch * ranks) == 0


def test_exact_tail_resplits_or_fails_at_construction(index, all_keys):
    # 39 samples, batch 19 x 2 ranks: 1 sample left for 2 ranks -> the last two steps are re-split
    per_rank = simulate(stream_factory(index, 19), 2, 1)
    assert [len(b) for b in per_rank[0]] == [10, 9] and [len(b) for b in per_rank[1]] == [10, 10]
    assert sorted(global_sequence(per_rank)) == all_keys
    with pytest.raises(InputError, match="tail='exact'"):
        ShardStream(index, 1, rank=0, world_size=2)  # batch 1: nothing to re-split
    with pytest.raises(InputError, match="tail='exact'"):
        ShardStream(index, 1, rank=0, world_size=40)  # more ranks than samples
    ShardStream(index, 1, rank=0, world_size=40, options=StreamOptions(tail="pad"))


@pytest.mark.parametrize("ranks,workers", [(1, 1), (2, 3), (3, 2), (4, 4)])
def test_stream_epoch_is_exact_and_topology_free(index, all_keys, ranks, workers):
    per_rank = simulate(stream_factory(index, 3), ranks, workers)
    assert len({len(b) for b in per_rank.values()}) == 1  # equal batch counts on every rank
    seq = global_sequence(per_rank)
    assert sorted(seq) == all_keys  # exactly once, more ranks x workers (16) than shards (7) included
    reference = global_sequence(simulate(stream_factory(index, 3), 1, 1))
    assert seq == reference  # the same global sequence whatever the topology


def test_epochs_differ_and_seeds_repeat(index):
    e0 = global_sequence(simulate(stream_factory(index, 4, epoch=0), 1, 1))
    e1 = global_sequence(simulate(stream_factory(index, 4, epoch=1), 1, 1))
    again = global_sequence(simulate(stream_factory(index, 4, epoch=0), 2, 2))
    assert e0 != e1 and sorted(e0) == sorted(e1)
    assert e0 == again


@pytest.mark.parametrize("tail", ["pad", "drop"])
def test_pad_and_drop_tails(index, all_keys, tail):
    per_rank = simulate(stream_factory(index, 4, tail=tail), 2, 3)
    counts = {r: [len(b) for b in v] for r, v in per_rank.items()}
    assert counts[0] == counts[1] and set(counts[0]) == {4}
    seq = global_sequence(per_rank)
    if tail == "pad":
        assert set(seq) == set(all_keys) and len(seq) == 40  # 39 samples padded to 5 steps of 8
    else:
        assert len(seq) == len(set(seq)) == 32


@pytest.mark.parametrize("before,after", [((2, 2), (2, 2)), ((2, 2), (1, 3)), ((1, 1), (3, 2)), ((4, 1), (2, 4))])
def test_resume_mid_epoch_with_same_or_changed_topology(index, all_keys, before, after):
    ranks, workers = before
    batch = 2
    streams = [ShardStream(index, batch, seed=5, epoch=1, rank=r, world_size=ranks) for r in range(ranks)]
    taken = []
    iters = [iter(s) for s in streams]  # in-process iteration counts handed-out batches
    for _ in range(3):  # three global steps
        for it in iters:
            taken += list(next(it)["__key__"])
    state = streams[0].state_dict()
    assert state == streams[-1].state_dict()  # every rank agrees on the global cursor
    assert state["consumed"] == 3 * batch * ranks and state["epoch"] == 1

    r2, w2 = after
    rest = simulate(lambda r, world: _resumed(index, batch, r, world, state), r2, w2)
    rest_seq = global_sequence(rest)
    assert sorted(taken + rest_seq) == all_keys  # exactly the unseen samples
    full = global_sequence(simulate(lambda r, world: ShardStream(index, batch, seed=5, epoch=1, rank=r, world_size=world), 1, 1))
    assert taken + rest_seq == full  # and in the epoch's order


def _resumed(index, batch, rank, world, state):
    s = ShardStream(index, batch, seed=0, epoch=0, rank=rank, world_size=world)
    s.load_state_dict(state)
    return s


def test_state_from_another_dataset_or_order_is_rejected(index, tmp_path):
    other = load_index(write_split(tmp_path, [4, 4], name="other"))
    state = ShardStream(other, 2, rank=0, world_size=1).state_dict()
    with pytest.raises(InputError, match="another dataset"):
        ShardStream(index, 2, rank=0, world_size=1).load_state_dict(state)
    mine = ShardStream(index, 2, rank=0, world_size=1).state_dict()
    with pytest.raises(InputError, match="order"):
        ShardStream(index, 2, rank=0, world_size=1, options=StreamOptions(shuffle=Shuffle("window"))).load_state_dict(mine)
    with pytest.raises(InputError, match="not a datakit stream state"):
        ShardStream(index, 2, rank=0, world_size=1).load_state_dict({"epoch": 3})


def test_epoch_advances_and_set_epoch_keeps_a_resumed_position(index):
    s = ShardStream(index, 4, seed=1, rank=0, world_size=1)
    first = keys_of(s)
    assert s.state_dict()["epoch"] == 1 and s.state_dict()["consumed"] == 0
    second = keys_of(s)  # a new pass is the next epoch
    assert sorted(first) == sorted(second) and first != second
    s.set_epoch(0)
    assert keys_of(s) == first  # explicitly replaying epoch 0

    s.set_epoch(5)
    it = iter(s)
    part = [next(it)["__key__"] for _ in range(2)]
    state = s.state_dict()
    t = ShardStream(index, 4, seed=1, rank=0, world_size=1)
    t.load_state_dict(state)
    t.set_epoch(5)  # the usual "set_epoch at the top of the epoch loop" must not undo the resume
    assert state["consumed"] == 8 and t.state_dict()["consumed"] == 8
    assert len(keys_of(t)) == index.total - 8 and part


def test_rank_and_world_size_default_from_env(index, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    s = ShardStream(index, 2)
    assert (s.rank, s.world_size) == (1, 3)
    monkeypatch.setenv("RANK", "7")
    with pytest.raises(InputError, match="rank 7"):
        ShardStream(index, 2)


def test_dataloader_workers_resume_and_len(index, all_keys):
    dl = loader(index, 3, seed=2, rank=0, world_size=1, num_workers=2)
    assert len(dl) == 13
    it = iter(dl)
    got = [list(next(it)["__key__"]) for _ in range(5)]
    state = dl.state_dict()
    assert state["consumed"] == 15
    del it
    resumed = loader(index, 3, rank=0, world_size=1, num_workers=1)
    resumed.load_state_dict(state)
    rest = keys_of(resumed)
    seq = [k for b in got for k in b] + rest
    assert sorted(seq) == all_keys
    full = global_sequence(simulate(stream_factory(index, 3, seed=2), 1, 1))
    assert seq == full
    assert resumed.state_dict()["epoch"] == 1


def test_persistent_workers_follow_set_epoch(index):
    dl = loader(index, 5, seed=4, rank=0, world_size=1, num_workers=2, persistent_workers=True)
    e0 = keys_of(dl)
    dl.set_epoch(3)
    e3 = keys_of(dl)
    expect = global_sequence(simulate(stream_factory(index, 5, seed=4, epoch=3), 1, 1))
    assert e3 == expect and e0 != e3


@pytest.mark.parametrize("tail", ["exact", "pad", "drop"])
@pytest.mark.parametrize("cursor", [0, 5, 33, 38])
def test_consumed_after_matches_partition(tail, cursor):
    if tail == "exact" and 39 - cursor < 3:  # fewer samples left than ranks: refused, never a hang
        with pytest.raises(InputError, match="tail='exact'"):
            global_steps(39, cursor, 2, 3, tail)
        return
    steps = global_steps(39, cursor, 2, 3, tail)
    assert all(a == (steps[i - 1][1] if i else cursor) for i, (a, _) in enumerate(steps))  # contiguous prefix
    for k in range(len(steps)):
        assert consumed_after(39, cursor, 2, 3, tail, k + 1) == steps[k][1]
        assert rank_batches(39, cursor, 2, 3, 0, tail)[k][0] == steps[k][0]
    assert consumed_after(39, cursor, 2, 3, tail, len(steps) + 1) >= 39 or tail == "drop"


def test_data_path_modules_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, datakit.stream, datakit.stream.mix, datakit.stream.transforms, datakit.stream.reader, "
            "datakit.stream.sampling, datakit.stream.access, datakit.stream.classes, datakit.stream.cache, "
            "datakit.shards.members; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_thread_loader_gives_the_same_batches_and_resumes(index, all_keys):
    expect = global_sequence(simulate(stream_factory(index, 3, seed=6), 1, 1))
    tl = loader(index, 3, seed=6, rank=0, world_size=1, threads=3)
    assert keys_of(tl) == expect and len(tl) == 13
    tl = loader(index, 3, seed=6, rank=0, world_size=1, threads=2)
    it = iter(tl)
    head = [k for _ in range(4) for k in next(it)["__key__"]]
    it.close()  # stops the threads mid-epoch
    state = tl.state_dict()
    assert state["consumed"] == 12
    rest = loader(index, 3, rank=0, world_size=1, threads=1)
    rest.load_state_dict(state)
    assert head + keys_of(rest) == expect
    with pytest.raises(InputError, match="threads"):
        loader(index, 3, rank=0, world_size=1, threads=2, num_workers=2)


def test_thread_loader_raises_worker_errors(index, tmp_path):
    import shutil

    from datakit.errors import CorruptShardError

    bad = tmp_path / "bad"
    shutil.copytree(index.base, bad)
    shard = bad / "train-000005.tar"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CorruptShardError, match="train-000005.tar"):
        keys_of(loader(load_index(bad), 3, rank=0, world_size=1, threads=2))
