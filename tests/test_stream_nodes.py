"""Node-local reading: shards dealt once per run into node groups, a node-major partition of each
step, exact epochs and elastic resume kept."""

from __future__ import annotations

import numpy as np
import pytest

from datakit.shards.index import load_index
from datakit.stream import Shuffle, epoch_order
from datakit.stream.dataset import ShardStream, StreamOptions
from datakit.stream.order import node_groups, space_of
from datakit.stream.partition import node_map
from test_stream_support import simulate, write_split

SIZES = [6, 6, 5, 7, 6, 6, 4, 8]  # 48 samples in 8 shards


@pytest.mark.parametrize("mode", ["global", "window", "shards"])
def test_grouped_order_is_a_permutation_with_fixed_groups(mode):
    space = space_of(SIZES)
    shuffle = Shuffle(mode, 6 if mode == "window" else None, nodes=2)
    a = epoch_order(space, shuffle, seed=3, epoch=0)
    assert sorted(a.tolist()) == list(range(48)) and np.array_equal(a, epoch_order(space, shuffle, 3, 0))
    groups = node_groups(space.counts, 3, 2)
    assert sorted(np.concatenate(groups).tolist()) == list(range(8))
    assert abs(sum(SIZES[s] for s in groups[0]) - sum(SIZES[s] for s in groups[1])) <= max(SIZES)
    shard_of = space.locate(a)[0]
    group_of = np.isin(shard_of, groups[1]).astype(int)
    common = 2 * min(sum(SIZES[s] for s in g) for g in groups)
    assert np.array_equal(group_of[:common], np.arange(common) % 2)  # position p comes from group p % 2
    b = epoch_order(space, shuffle, seed=3, epoch=1)
    assert not np.array_equal(a, b)
    assert np.array_equal(np.isin(space.locate(b)[0], groups[1])[:common], group_of[:common].astype(bool))  # same groups


def test_node_map_permutes_inside_steps_only():
    m = node_map(50, 2, 3, 4, "exact", 2)  # steps of 12 from position 2; the last 0 full... tail contiguous
    for k in range(4):
        step = [m(p) for p in range(2 + 12 * k, 2 + 12 * (k + 1))]
        assert sorted(step) == list(range(2 + 12 * k, 2 + 12 * (k + 1)))
    assert m(2) == 2 and m(3) == 4 and m(8) == 3  # node 0 takes even offsets, node 1 odd ones
    assert [m(p) for p in range(m.regular_end, 50)] == list(range(m.regular_end, 50))


def test_each_node_reads_only_its_group_and_epochs_stay_exact(tmp_path):
    index = load_index(write_split(tmp_path, SIZES))
    shuffle = Shuffle("window", 6, nodes=2)
    opts = StreamOptions(shuffle=shuffle, ranks_per_node=2)
    per_rank = simulate(lambda r, w: ShardStream(index, 3, seed=3, rank=r, world_size=w, options=opts), 4, 2)
    keys = sorted(k for batches in per_rank.values() for b in batches for k in b)
    assert keys == [f"s{u:05d}" for u in range(48)]  # exactly once
    assert len({len(b) for b in per_rank.values()}) == 1  # equal batch counts
    groups = node_groups(space_of(SIZES).counts, 3, 2)
    starts = np.concatenate([[0], np.cumsum(SIZES)])
    shard_of = {f"s{u:05d}": int(np.searchsorted(starts, u, side="right") - 1) for u in range(48)}
    common = 2 * min(sum(SIZES[s] for s in g) for g in groups)  # beyond it only the larger group is left
    local_steps = common // 12
    assert local_steps >= 3
    for r, batches in per_rank.items():
        node = r // 2
        for b in batches[:local_steps]:
            assert all(shard_of[k] in groups[node] for k in b), (r, b)  # node-local in every such step


def test_node_partition_resumes_on_another_topology(tmp_path):
    index = load_index(write_split(tmp_path, SIZES))
    opts = StreamOptions(shuffle=Shuffle("global", nodes=2), ranks_per_node=2)
    streams = [ShardStream(index, 2, seed=1, rank=r, world_size=4, options=opts) for r in range(4)]
    its = [iter(s) for s in streams]
    taken = [k for _ in range(3) for it in its for k in next(it)["__key__"]]
    state = streams[0].state_dict()
    assert state["consumed"] == 24 and state["order"]["nodes"] == 2
    one_node = StreamOptions(shuffle=Shuffle("global", nodes=2), ranks_per_node=3)
    rest = simulate(lambda r, w: _resumed(index, r, w, state, one_node), 3, 2)
    remaining = [k for batches in rest.values() for b in batches for k in b]
    assert sorted(taken + remaining) == [f"s{u:05d}" for u in range(48)]


def _resumed(index, rank, world, state, opts):
    s = ShardStream(index, 5, rank=rank, world_size=world, options=opts)
    s.load_state_dict(state)
    return s
