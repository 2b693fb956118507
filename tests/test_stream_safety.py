"""Everyday safety of the loader: early exits never hang, impossible settings fail at construction,
evaluation mode, fail-fast shard checks, hostile shards (non-UTF-8 names, decompression bombs),
mask dtypes a loss accepts."""

from __future__ import annotations

import gc
import io
import json
import tarfile
import threading
import time
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from test_stream_support import global_sequence, keys_of, simulate, write_split

from datakit.errors import CorruptShardError, InputError
from datakit.jobs.parts import seal
from datakit.shards.index import load_index
from datakit.shards.scan import scan_samples
from datakit.stream import ReadOptions, Shuffle
from datakit.stream.dataset import ShardStream, StreamOptions, loader
from datakit.stream.transforms import CastMasks, Compose, HFlip, seg_train

SIZES = [5, 3, 8, 1, 7, 13, 2]  # 39 samples


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return load_index(write_split(tmp_path_factory.mktemp("safety"), SIZES))


def _stream_threads_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("datakit-stream")]


def _wait_for_no_stream_threads(limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while _stream_threads_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _stream_threads_alive(), "loader threads still running after the loop ended"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", [{"threads": 2}, {"num_workers": 2}])
def test_break_after_a_few_batches_returns(index, kind):
    # 39 samples in batches of 6: 7 batches, so each thread has made all of its batches and is
    # queueing its end marker into a full queue when the loop breaks (where the old loader hung)
    dl = loader(index, 6, rank=0, world_size=1, **kind)
    started = time.monotonic()
    seen = []
    for i, batch in enumerate(dl):
        seen += batch["__key__"]
        if i == 2:
            time.sleep(1)
            break
    assert time.monotonic() - started < 60 and len(seen) == 18
    assert dl.state_dict()["consumed"] == 18
    small = loader(index, 10, rank=0, world_size=1, **kind)  # 4 batches: next(iter(dl)) on a small split
    first = next(iter(small))
    assert len(first["__key__"]) == 10
    for _step, _ in zip(range(3), small):  # a fixed-step training loop
        pass
    gc.collect()
    _wait_for_no_stream_threads()


@pytest.mark.timeout(90)
def test_thread_iterator_close_and_gc_stop_the_threads(index):
    dl = loader(index, 1, rank=0, world_size=1, threads=3)
    it = iter(dl)
    next(it)
    time.sleep(0.3)  # every queue fills up
    it.close()
    _wait_for_no_stream_threads()
    it = iter(dl)
    next(it)
    del it
    gc.collect()
    _wait_for_no_stream_threads()


def test_drop_tail_shorter_than_one_step_is_refused(index):
    with pytest.raises(InputError, match=r"toy/train: tail='drop' with 39 sample\(s\) gives no batch"):
        ShardStream(index, 20, rank=0, world_size=2, options=StreamOptions(tail="drop"))
    s = ShardStream(index, 16, rank=0, world_size=1, options=StreamOptions(tail="drop"))
    assert s.state_dict()["epoch"] == 0  # a fresh loader is at epoch 0 (it said 1)
    assert len(keys_of(s)) == 32 and s.state_dict()["epoch"] == 1
    keys_of(s)
    assert s.state_dict()["epoch"] == 2 and s.state_dict()["consumed"] == 0  # one per pass (it added 2)


def test_evaluation_mode_is_exact_on_every_topology_with_batch_one(index):
    ev = StreamOptions.evaluation()
    for ranks, workers, batch in [(8, 1, 1), (8, 3, 1), (3, 2, 4), (5, 1, 16), (1, 2, 7)]:
        per_rank = simulate(lambda r, w, b=batch: ShardStream(index, b, rank=r, world_size=w, options=ev), ranks, workers)
        keys = [k for batches in per_rank.values() for b in batches for k in b]
        assert sorted(keys) == [f"s{u:05d}" for u in range(39)], (ranks, workers, batch)  # once, no padding
        counts = [len(b) for b in per_rank.values()]
        assert max(counts) - min(counts) <= 1
    s = ShardStream(index, 1, rank=7, world_size=8, options=ev)  # 39 = 4 x 8 + 7: rank 7 gets a batch fewer
    assert len(s) == 4 and len(keys_of(s)) == 4 and s.state_dict()["epoch"] == 1
    with pytest.raises(InputError, match="tail='exact'"):
        ShardStream(index, 1, rank=0, world_size=8)  # the training mode still refuses it


def test_pad_tail_flags_padded_samples(index):
    opts = StreamOptions(tail="pad")
    per_rank = {r: list(ShardStream(index, 4, rank=r, world_size=2, options=opts)) for r in range(2)}
    flags = [(k, bool(p)) for b in per_rank[0] + per_rank[1] for k, p in zip(b["__key__"], b["__pad__"])]
    assert len(flags) == 40 and sum(p for _, p in flags) == 1  # 39 samples padded to 5 steps of 8
    assert sorted(k for k, p in flags if not p) == [f"s{u:05d}" for u in range(39)]
    assert per_rank[0][0]["__pad__"].dtype == torch.bool


def test_local_shards_are_checked_at_construction(tmp_path):
    split = write_split(tmp_path, [4, 4, 4])
    (split / "train-000001.tar").unlink()
    with pytest.raises(InputError, match=r"missing.*train-000001\.tar"):
        ShardStream(load_index(split), 2, rank=0, world_size=1)
    other = write_split(tmp_path / "b", [4, 4])
    (other / "train-000009.tar").write_bytes(b"\0" * 1024)  # a stray tar the index does not list
    with pytest.warns(RuntimeWarning, match=r"not listed.*train-000009\.tar"):
        ShardStream(load_index(other), 2, rank=0, world_size=1)


def test_empty_split_names_itself(tmp_path):
    with pytest.raises(InputError, match=r"the stream has no samples \(toy/val\)"):
        ShardStream(load_index(write_split(tmp_path, [], split="val")), 2, rank=0, world_size=1)


def test_scanner_reports_non_utf8_member_names(tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        for name in ("s0.cls", "s\udcff1.cls"):  # the second name is the raw byte 0xff
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"3"))
    data = path.read_bytes()
    assert b"s\xff1.cls" in data
    with pytest.raises(CorruptShardError, match="bad.tar: member name at byte 1024 is not UTF-8"):
        scan_samples(lambda off, n: data[off : off + n], len(data), str(path))


def _bomb_split(tmp_path):
    """A split whose sample s00002 has a JPEG header claiming 60000 x 60000 pixels (tar written by tarfile)."""
    split = write_split(tmp_path, [4, 4])
    shard = split / "train-000000.tar"
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    rebuilt = []
    for name, data in members:
        if name == "s00002.jpg":
            at = data.index(b"\xff\xc0")  # baseline frame header: length(2) precision(1) height(2) width(2)
            data = data[: at + 5] + (60000).to_bytes(2, "big") * 2 + data[at + 9 :]
        rebuilt.append((name, data))
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in rebuilt:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    obj = json.loads((split / "index.json").read_text())
    obj["shardlist"][0]["filesize"] = shard.stat().st_size
    (split / "index.json").write_text(json.dumps(seal(obj)))  # a forger who knows the digest rule
    return load_index(split)


def test_decompression_bomb_is_a_corrupt_sample_not_a_crash(tmp_path):
    index = _bomb_split(tmp_path)
    with pytest.raises(CorruptShardError, match=r"train-000000\.tar: sample 's00002' member 'jpg' does not decode"):
        keys_of(ShardStream(index, 8, rank=0, world_size=1, options=StreamOptions(shuffle=Shuffle("none"))))
    skip = StreamOptions(shuffle=Shuffle("none"), read=ReadOptions(on_corrupt="skip"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keys = keys_of(ShardStream(index, 8, rank=0, world_size=1, options=skip))
    assert len(keys) == 8 and "s00002" not in keys
    assert any("s00002" in str(w.message) for w in caught)


def test_masks_reach_the_loss_as_int64_by_default(tmp_path):
    index = load_index(write_split(tmp_path, [3, 3], bits=16))  # 16-bit masks (ids up to 7000, ignore 65535)
    ignore = index.spec.ignore_id
    batch = next(iter(ShardStream(index, 6, rank=0, world_size=1, transform=seg_train(16, ignore))))
    mask = batch["seg.png"]
    assert mask.dtype == torch.int64
    assert int(mask.max()) <= 7000 or int(mask.max()) == ignore
    valid = mask < ignore
    target = (mask // 1000).masked_fill(~valid, -100)  # the stored ids are class x 1000
    loss = torch.nn.functional.cross_entropy(torch.zeros(6, 8, 16, 16), target)  # ignore_index -100
    assert torch.isfinite(loss)
    kept = next(iter(ShardStream(index, 6, rank=0, world_size=1, transform=seg_train(16, ignore, mask_dtype="uint16"))))
    assert kept["seg.png"].dtype == torch.uint16
    with pytest.raises(InputError, match="mask_dtype"):
        CastMasks("float32")
    with pytest.raises(InputError, match="holds ids above uint8"):
        CastMasks("uint8")({"seg.png": np.array([[300]], dtype=np.uint16)}, np.random.default_rng(0))


def test_default_loader_uses_threads_only_when_safe(index):
    from datakit.stream.dataset import StreamLoader
    from datakit.stream.threads import ThreadLoader

    assert isinstance(loader(index, 4, rank=0, world_size=1), ThreadLoader)
    assert isinstance(loader(index, 4, rank=0, world_size=1, transform=seg_train(8, 255)), ThreadLoader)
    assert isinstance(loader(index, 4, rank=0, world_size=1, transform=lambda s, rng: s), StreamLoader)
    mixed = Compose((HFlip(), lambda s, rng: s))  # a user step inside a datakit Compose
    assert isinstance(loader(index, 4, rank=0, world_size=1, transform=mixed), StreamLoader)
    assert isinstance(loader(index, 4, rank=0, world_size=1, pin_memory=False), StreamLoader)
    seq = keys_of(loader(index, 4, seed=2, rank=0, world_size=1))
    assert seq == global_sequence(simulate(lambda r, w: ShardStream(index, 4, seed=2, rank=r, world_size=w), 1, 1))
    assert Counter(seq) == Counter(f"s{u:05d}" for u in range(39))
