"""Reading shards: the tar scanner, local/HTTP/S3 sources, retries, the disk cache, corrupt shards."""

from __future__ import annotations

import shutil
import socket
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
from datakit.stream import ReadOptions, Shuffle, open_index
from datakit.stream.dataset import ShardStream, StreamOptions, loader
from datakit.shards.scan import scan_samples
from test_stream_support import cell_sample, classes_from_image, global_sequence, keys_of, simulate, write_split

FAST = ReadOptions(retries=1, backoff_s=0.01)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("remote"), [6, 2, 9, 4])


WINDOW = StreamOptions(shuffle=Shuffle("window"))  # explicit, so local and remote copies share one order


def read_opts(**kw) -> StreamOptions:
    return StreamOptions(shuffle=Shuffle("window"), read=ReadOptions(retries=kw.pop("retries", 1), backoff_s=0.01, **kw))


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
    stream = ShardStream(load_index(bad), 7, rank=0, world_size=1, options=read_opts())
    with pytest.raises(CorruptShardError, match=message) as err:
        keys_of(stream)
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
    index = open_index(f"{url}/train/index.json")
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


def test_disk_cache_respects_its_limit(split, tmp_path, http_root):
    url = http_root(split.parent)
    biggest = max(p.stat().st_size for p in split.glob("*.tar"))
    with pytest.raises(InputError, match="at least one shard"):
        ShardStream(f"{url}/train", 5, rank=0, world_size=1, options=read_opts(cache_dir=str(tmp_path / "c"), cache_bytes=biggest - 1))
    cache = tmp_path / "cache"
    opts = read_opts(cache_dir=str(cache), cache_bytes=biggest + 1000)
    keys = keys_of(loader(f"{url}/train", 5, rank=0, world_size=1, num_workers=2, options=opts))
    assert sorted(keys) == sorted(keys_of(ShardStream(load_index(split), 5, rank=0, world_size=1)))
    cached = [p for p in cache.iterdir() if p.suffix == ".tar"]
    assert cached and sum(p.stat().st_size for p in cached) <= biggest + 1000


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


def test_s3_shards_from_a_local_server(split, monkeypatch):
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
        opts = StreamOptions(shuffle=Shuffle("window"), read=ReadOptions(retries=1, backoff_s=0.01, storage_options=storage))
        per_rank = simulate(lambda r, w: ShardStream("s3://shards/toy/train", 4, seed=9, rank=r, world_size=w, options=opts), 2, 2)
        local = simulate(lambda r, w: ShardStream(load_index(split), 4, seed=9, rank=r, world_size=w, options=WINDOW), 1, 1)
        assert global_sequence(per_rank) == global_sequence(local)
        client.put_object(Bucket="shards", Key="toy/train/train-000003.tar", Body=b"\0" * 100)  # replaced, wrong size
        stream = ShardStream("s3://shards/toy/train", 21, rank=0, world_size=1, options=opts)
        with pytest.raises(CorruptShardError, match=r"s3://shards/toy/train/train-000003\.tar"):
            keys_of(stream)
    finally:
        server.stop()


def test_missing_index_is_an_input_error(tmp_path, http_root):
    url = http_root(tmp_path)
    with pytest.raises(InputError, match="not found"):
        open_index(f"{url}/nothing/index.json", opts=FAST)
    with pytest.raises(InputError, match="no datakit index"):
        open_index(tmp_path / "nothing")


def test_memory_budget_smaller_than_a_shard_is_refused(split):
    with pytest.raises(InputError, match="memory_bytes"):
        ShardStream(load_index(split), 2, rank=0, world_size=1, options=read_opts(memory_bytes=10))
