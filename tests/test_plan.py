"""Planning at scale: tasks stream out while the listing is still running, with one order window of
records held at a time, and a resident key set that stays small per record."""

from __future__ import annotations

import tracemalloc
from itertools import islice

from datakit.pipeline.plan import KeySet, PlanOptions, plan_tasks
from datakit.sources.base import InputFile, Record


def listing(n: int, pulled: list[int]):
    """A listing of ``n`` ImageNet-like records that counts how far it has been read."""
    for i in range(n):
        pulled[0] = i + 1
        wnid = f"n{i // 1300:08d}"
        path = f"/data/imagenet/train/{wnid}/{wnid}_{i}.JPEG"
        yield Record(f"{wnid}_{i}", path, 110_000, (InputFile(path, 110_000, 1_700_000_000_000_000_000 + i),))


def test_tasks_stream_out_one_window_ahead_of_the_listing():
    pulled = [0]
    opts = PlanOptions(shard_size=100, window=1000)
    tasks = plan_tasks("train", listing(1_000_000, pulled), opts)
    first = list(islice(tasks, 10))  # the first window's ten shards
    assert [t.size for t in first] == [100] * 10
    assert pulled[0] <= 2 * 1000  # a million-record listing was read at most two windows far
    keys = {r.key for t in first for r in t.records}
    assert len(keys) == 1000 and keys == {f"n{i // 1300:08d}_{i}" for i in range(1000)}


def test_source_order_streams_shard_by_shard():
    pulled = [0]
    first = next(plan_tasks("train", listing(1_000_000, pulled), PlanOptions(shard_size=100, order="source")))
    assert [r.key for r in first.records][:2] == ["n00000000_0", "n00000000_1"] and pulled[0] <= 101


def test_the_resident_key_set_costs_little_per_record():
    keys = [f"n{i // 1300:08d}_{i}" for i in range(200_000)]
    tracemalloc.start()
    seen = KeySet()
    for k in keys:
        assert seen.add(k)
    resident, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert resident / len(keys) <= 120  # bytes a record: ImageNet's 1.28M keys in ~150 MB at most
    assert not seen.add(keys[12345])  # and it still finds the duplicate
