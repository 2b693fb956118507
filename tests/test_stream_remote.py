"""Reading shards: the tar scanner, local/HTTP/S3 sources, retries, the disk cache, corrupt shards."""

from __future__ import annotations

import json
import shutil
import socket
from collections import Counter
import tarfile
import threading
import warnings
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from datakit.pipeline import BuildOptions, build
from datakit.errors import CorruptShardError, InputError
from datakit.sources.base import Record, Sample
from datakit.shards.codecs import decode_rgb, prepare_image
from datakit.shards.index import load_index
from datakit.shards.spec import ClassTable, MaskMember, SplitSpec
from datakit.stream import ReadOptions, Shuffle
from datakit.stream.dataset import ShardStream, StreamOptions, loader
from datakit.shards.scan import scan_samples
from test_stream_support import cell_sample, classes_from_image, global_sequence, keys_of, simulate, write_split

FAST = ReadOptions(retries=1, backoff_s=0.01)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """The default node cache (remote shards) goes to a fresh folder per test, never the user's."""
    monkeypatch.setenv("DATAKIT_CACHE_DIR", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("remote"), [6, 2, 9, 4])


WINDOW = StreamOptions(shuffle=Shuffle("window", 10))  # explicit, so local and remote copies share one order


def read_opts(**kw) -> StreamOptions:
    return StreamOptions(shuffle=Shuffle("window", 10), read=ReadOptions(retries=kw.pop("retries", 1), backoff_s=0.01, **kw))


def test_scanner_agrees_with_tarfile(split):
    path = split / "train-000002.tar"
    data = path.read_bytes()
    spans = scan_samples(lambda off, n: data[off : off + n], len(data), str(path))
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    flat = [(f"{s.key}.{ext}", data[s.start + off : s.start + off + n]) for s in spans for ext, off, n in s.members]
    assert flat == members and len(spans) == 9


def test_samples_decode_exactly(split):
    index = load_index(split)
    batch = next(iter(ShardStream(index, 21, rank=0, world_size=1)))
    for i, key in enumerate(batch["__key__"]):
        image, mask = cell_sample(int(key[1:]))
        assert np.array_equal(batch["seg.png"][i].numpy(), mask)
        assert np.array_equal(batch["image"][i].numpy(), decode_rgb(prepare_image(image).data))
        assert (classes_from_image(batch["image"][i].numpy()) == mask).mean() > 0.97
        assert int(batch["cls"][i]) == int(key[1:]) % 40
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape[1:] == (24, 32, 3)


def test_sixteen_bit_masks_stay_sixteen_bit(tmp_path):
    index = load_index(write_split(tmp_path, [3, 2], bits=16))
    batch = next(iter(ShardStream(index, 5, rank=0, world_size=1)))
    assert batch["seg.png"].dtype == torch.uint16
    for i, key in enumerate(batch["__key__"]):
        expect = cell_sample(int(key[1:]))[1].astype(np.uint16) * 1000
        assert np.array_equal(batch["seg.png"][i].numpy(), expect)


class TinySource:
    """A picklable generated source, so the real build pipeline writes the shards."""

    name = "tiny"

    def splits(self):
        return ["train"]

    def spec(self, split):
        return SplitSpec("tiny", split, classes=ClassTable.from_names([f"c{i}" for i in range(40)], 255),
                         masks=(MaskMember("seg.png", 8, 255),), cls=True)

    def records(self, split):
        return [Record(f"k{i:03d}", {"uid": i}) for i in range(11)]

    def load(self, record):
        image, mask = cell_sample(record.payload["uid"], 16, 16)
        return Sample(record.key, image, {"seg.png": mask}, cls=record.payload["uid"] % 40, meta={"uid": record.payload["uid"]})


def test_stream_over_a_real_build(tmp_path):
    build(TinySource(), tmp_path, opts=BuildOptions(shard_size=4, workers=1, progress=False))
    index = load_index(tmp_path / "train")
    assert [e.nsamples for e in index.shards] == [4, 4, 3]
    per_rank = simulate(lambda r, w: ShardStream(index, 2, rank=r, world_size=w), 2, 2)
    assert sorted(global_sequence(per_rank)) == [f"k{i:03d}" for i in range(11)]
    batch = next(iter(ShardStream(index, 3, rank=0, world_size=1)))
    assert [m["uid"] for m in batch["json"]] == [int(k[1:]) for k in batch["__key__"]]


def _damaged_copy(split: Path, dest: Path, shard: str, how: str) -> Path:
    shutil.copytree(split, dest)
    path = dest / shard
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "header":
        data[512 * 0 + 130] = ord("x")  # garbage in the first header's size field breaks its checksum
        path.write_bytes(bytes(data))
    elif how == "jpeg":
        start = data.index(b"\xff\xd8\xff")
        data[start : start + 400] = b"\x00" * 400  # same size, undecodable image
        path.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize("how,message", [("truncate", "index says"), ("header", "checksum"), ("jpeg", "does not decode")])
def test_corrupt_local_shard_names_the_shard(split, tmp_path, how, message):
    bad = _damaged_copy(split, tmp_path / "bad", "train-000002.tar", how)
    with pytest.raises(CorruptShardError, match=message) as err:  # a resized shard fails at construction
        keys_of(ShardStream(load_index(bad), 7, rank=0, world_size=1, options=read_opts()))
    assert "train-000002.tar" in str(err.value)


def test_skip_option_warns_and_keeps_batches_equal(split, tmp_path):
    bad = _damaged_copy(split, tmp_path / "bad", "train-000002.tar", "truncate")
    index = load_index(bad)
    opts = read_opts(on_corrupt="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        per_rank = simulate(lambda r, w: ShardStream(index, 3, rank=r, world_size=w, options=opts), 2, 1)
    assert any("train-000002.tar" in str(w.message) for w in caught)
    assert len(per_rank[0]) == len(per_rank[1])
    seq = global_sequence(per_rank)
    assert len(seq) == index.total  # same shape as a clean epoch; the bad shard's slots are substituted
    assert not any(8 <= int(k[1:]) <= 16 for k in seq)  # no sample of shard 2 (uids 8..16)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Flaky(_Quiet):
    """Cuts the first transfer of every shard short (Content-Length promises more), like a dropped link."""

    seen: set[str] = set()
    lock = threading.Lock()

    def copyfile(self, source, outputfile):
        with self.lock:
            first = self.path.endswith(".tar") and self.path not in self.seen
            self.seen.add(self.path)
        if first:
            outputfile.write(source.read(1000))
            self.close_connection = True
            return
        super().copyfile(source, outputfile)


class _Counting(_Quiet):
    """Counts the shard requests it serves."""

    shard_requests: list[str] = []

    def do_GET(self):
        if self.path.endswith(".tar"):
            self.shard_requests.append(self.path)
        super().do_GET()


@pytest.fixture
def http_root(tmp_path):
    servers = []

    def serve(directory: Path, handler=_Quiet) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def test_http_shards_with_retries(split, http_root):
    url = http_root(split.parent, _Flaky)
    index = load_index(f"{url}/train/index.json")
    assert index.total == 21 and index.shard_path(index.shards[0]).startswith("http://")
    stream = ShardStream(index, 5, rank=0, world_size=1, options=read_opts(retries=2))
    local = ShardStream(load_index(split), 5, rank=0, world_size=1, options=WINDOW)
    assert keys_of(stream) == keys_of(local)  # every shard's first transfer failed and was retried


def test_http_truncated_shard_names_the_shard(split, tmp_path, http_root):
    bad = _damaged_copy(split, tmp_path / "site" / "train", "train-000001.tar", "truncate")
    url = http_root(bad.parent)
    stream = ShardStream(f"{url}/train", 7, rank=0, world_size=1, options=read_opts())
    with pytest.raises(CorruptShardError, match=r"train-000001\.tar: got \d+ bytes, the index says"):
        keys_of(stream)


def test_disk_cache_respects_its_limit(tmp_path, http_root):
    """Was flaky: two workers made room for their downloads at once and overshot the limit
    together. Downloads now reserve their bytes under a cache-wide lock; the budget is checked."""
    split = write_split(tmp_path / "site", [5] * 8 + [3])
    url = http_root(split.parent, _Counting)
    _Counting.shard_requests.clear()
    biggest = max(p.stat().st_size for p in split.glob("*.tar"))
    shards = StreamOptions(shuffle=Shuffle("shards"), read=ReadOptions(retries=1, backoff_s=0.01, cache_dir=str(tmp_path / "c"),
                                                                      cache_bytes=3 * biggest - 1))
    with pytest.raises(InputError, match="too small for the shards shuffle"):  # its shard + 2 must fit
        ShardStream(f"{url}/train", 5, rank=0, world_size=1, options=shards)
    limit = 7 * biggest  # shards shuffle: 1 + 2 shards, and 4 for the batches 2 workers have in flight
    cache = tmp_path / "cache"
    opts = StreamOptions(shuffle=Shuffle("shards"),
                         read=ReadOptions(retries=1, backoff_s=0.01, cache_dir=str(cache), cache_bytes=limit))
    for _ in range(3):  # two worker processes race for room in a cache smaller than the split
        with pytest.warns(RuntimeWarning, match="in flight"):  # the estimate of batches in flight is conservative
            dl = loader(f"{url}/train", 5, rank=0, world_size=1, num_workers=2, options=opts)
        keys = keys_of(dl)
        assert sorted(keys) == [f"s{u:05d}" for u in range(43)]
        cached = [p for p in cache.iterdir() if p.suffix == ".tar"]
        assert cached and sum(p.stat().st_size for p in cached) <= limit
        assert not [p for p in cache.iterdir() if ".part-" in p.name]  # no reservation left behind
    per_shard = Counter(_Counting.shard_requests)
    assert set(per_shard) == {f"/train/train-{i:06d}.tar" for i in range(9)}
    assert max(per_shard.values()) <= 3  # at most once per shard per epoch, with two workers


def test_disk_cache_is_shared_and_reused(split, tmp_path, http_root):
    url = http_root(split.parent, _Counting)
    _Counting.shard_requests.clear()
    opts = read_opts(cache_dir=str(tmp_path / "cache"))
    first = keys_of(loader(f"{url}/train", 5, rank=0, world_size=1, num_workers=2, options=opts))
    assert sorted(_Counting.shard_requests) == [f"/train/train-00000{i}.tar" for i in range(4)]  # once each, 2 workers
    second = keys_of(ShardStream(f"{url}/train", 5, epoch=1, rank=0, world_size=1, options=opts))
    assert len(_Counting.shard_requests) == 4 and sorted(first) == sorted(second)


def test_sha256_verification_catches_same_size_damage(split, tmp_path, http_root):
    bad = _damaged_copy(split, tmp_path / "site" / "train", "train-000000.tar", "jpeg")
    url = http_root(bad.parent)
    opts = read_opts(verify="sha256")
    with pytest.raises(CorruptShardError, match=r"train-000000\.tar: sha256 does not match"):
        keys_of(ShardStream(f"{url}/train", 21, rank=0, world_size=1, options=opts))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_s3_shards_from_a_local_server(split, monkeypatch, tmp_path):
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="shards")
        for p in split.iterdir():
            client.upload_file(str(p), "shards", f"toy/train/{p.name}")
        storage = {"client_kwargs": {"endpoint_url": endpoint}, "key": "testing", "secret": "testing"}
        opts = StreamOptions(shuffle=Shuffle("window", 10), read=ReadOptions(retries=1, backoff_s=0.01, storage_options=storage))
        per_rank = simulate(lambda r, w: ShardStream("s3://shards/toy/train", 4, seed=9, rank=r, world_size=w, options=opts),
                            2, 2)
        local = simulate(lambda r, w: ShardStream(load_index(split), 4, seed=9, rank=r, world_size=w, options=WINDOW), 1, 1)
        assert global_sequence(per_rank) == global_sequence(local)
        client.put_object(Bucket="shards", Key="toy/train/train-000003.tar", Body=b"\0" * 100)  # replaced, wrong size
        fresh = StreamOptions(shuffle=Shuffle("window", 10), read=ReadOptions(retries=1, backoff_s=0.01, storage_options=storage,
                                                                             cache_dir=str(tmp_path / "fresh")))
        stream = ShardStream("s3://shards/toy/train", 21, rank=0, world_size=1, options=fresh)  # a node without the shard
        with pytest.raises(CorruptShardError, match=r"s3://shards/toy/train/train-000003\.tar"):
            keys_of(stream)
    finally:
        server.stop()


def test_missing_index_is_an_input_error(tmp_path, http_root):
    url = http_root(tmp_path)
    with pytest.raises(InputError, match="no datakit index"):
        load_index(f"{url}/nothing/index.json", policy=FAST.policy)
    with pytest.raises(InputError, match="no datakit index"):
        load_index(tmp_path / "nothing")


def test_memory_budget_smaller_than_a_shard_is_refused(split):
    with pytest.raises(InputError, match="memory_bytes"):
        ShardStream(load_index(split), 2, rank=0, world_size=1, options=read_opts(memory_bytes=10))


def _rank_job(url: str, cache: str, budget: int, nodes: int | None, rank: int, epoch: int, out: str, step=None) -> None:
    """One rank of a 4-rank job (2 per node): a 2-worker-process loader over one epoch; ``step``
    (a barrier) keeps the ranks in lockstep, as DDP's collectives do."""
    opts = StreamOptions(shuffle=Shuffle(nodes=nodes), ranks_per_node=2,
                         read=ReadOptions(retries=1, backoff_s=0.01, cache_dir=cache, cache_bytes=budget))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl = loader(f"{url}/train", 3, seed=4, epoch=epoch, rank=rank, world_size=4, num_workers=2, options=opts)
    keys = []
    for batch in dl:
        keys += batch["__key__"]
        step.wait(120)
    Path(out).write_text(json.dumps({"keys": keys, "order": dl.state_dict()["order"]}))


def _run_ranks(jobs: list[tuple]) -> list[dict]:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    step = ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=_rank_job, args=(*job, step)) for job in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [json.loads(Path(job[-1]).read_text()) for job in jobs]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("budget_shards,nodes", [(None, None), (8, None), (None, 2)])
def test_two_nodes_download_each_shard_once_per_node_per_epoch(tmp_path, http_root, budget_shards, nodes):
    """2 simulated nodes x 2 ranks x 2 loader worker processes, each node with its own shard cache
    and its own server (to count per node): the default cache, with the whole split fitting; a
    budget of 8 shards of 30 samples (a window of 3 shards, 3 for the 72 positions in flight =
    3 x 4 ranks x 2 workers x 3 batches ahead, 2 spare; it evicts as it goes); and node-local
    reading (``Shuffle(nodes=2)``), where each node downloads only its half."""
    split = write_split(tmp_path / "site", [30] * 10, h=8, w=8)
    biggest = max(p.stat().st_size for p in split.glob("*.tar"))
    budget = 64 << 30 if budget_shards is None else budget_shards * biggest
    nodes_ = [type(f"Node{n}", (_Counting,), {"shard_requests": []}) for n in range(2)]
    urls = [http_root(split.parent, handler) for handler in nodes_]
    report = []
    for epoch in range(2):
        before = [len(h.shard_requests) for h in nodes_]
        jobs = [(urls[r // 2], str(tmp_path / f"cache{r // 2}"), budget, nodes, r, epoch, str(tmp_path / f"r{r}-e{epoch}.json"))
                for r in range(4)]
        results = _run_ranks(jobs)
        keys = [k for res in results for k in res["keys"]]
        assert sorted(keys) == [f"s{u:05d}" for u in range(300)]  # exactly once over the job
        assert results[0]["order"]["mode"] == ("global" if budget_shards is None else "window")
        for n, handler in enumerate(nodes_):
            per_shard = Counter(handler.shard_requests[before[n]:])
            report.append((epoch, n, dict(per_shard)))
            assert max(per_shard.values(), default=0) <= 1, (epoch, n, per_shard)  # once per shard per node per epoch
            if epoch == 0 and nodes is None:
                assert len(per_shard) == 10  # every shard reached every node once
        if nodes:
            halves = [set(Counter(h.shard_requests[before[n]:])) for n, h in enumerate(nodes_)]
            assert not halves[0] & halves[1]  # no shard went to both nodes
            assert len(halves[0] | halves[1]) == (10 if epoch == 0 else 0)  # each once in all; none again
    print("downloads per (epoch, node):", [(e, n, sum(c.values())) for e, n, c in report])


def test_a_cache_disk_too_small_for_the_split_is_reported(split, http_root, monkeypatch):
    import collections

    from datakit.stream import reader

    url = http_root(split.parent)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(reader.shutil, "disk_usage", lambda path: usage(100, 90, 10))
    with pytest.warns(RuntimeWarning, match="has 10 bytes free"):
        ShardStream(f"{url}/train", 5, rank=0, world_size=1, options=read_opts())
