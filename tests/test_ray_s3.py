"""Beyond one machine: Ray executor (same bytes as local, retries) and builds written to S3."""

import os
import socket
from pathlib import Path

import pytest

from datakit.pipeline import BuildOptions, build
from datakit.shards.index import load_index
from datakit.shards.reader import iter_split
from datakit.shards.verify import verify_index
from datakit.sources.demo import DemoSource

ray = pytest.importorskip("ray")


def tars(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.tar"))}


class CrashOnce(DemoSource):
    """Kills its worker process the first time it loads a chosen record; fine on the retry."""

    def __init__(self, marker: str, crash_key: str) -> None:
        super().__init__(40)
        self.marker, self.crash_key = marker, crash_key

    def load(self, record):
        if record.key == self.crash_key and not os.path.exists(self.marker):
            Path(self.marker).write_text("crashed")
            os._exit(1)
        return super().load(record)


@pytest.mark.slow
def test_ray_build_is_byte_identical_to_local(ray_cluster, tmp_path):
    local = build(DemoSource(40), tmp_path / "local", None, BuildOptions(shard_size=9, workers=2, progress=False))
    on_ray = build(DemoSource(40), tmp_path / "ray", None, BuildOptions(shard_size=9, workers=2, executor="ray", progress=False))
    assert on_ray.samples_written == local.samples_written == 45
    assert tars(tmp_path / "ray") == tars(tmp_path / "local") and len(tars(tmp_path / "local")) == 7
    for split in ("synthetic", "ade150", "voc"):
        assert (tmp_path / "ray" / split / "index.json").read_bytes() == (tmp_path / "local" / split / "index.json").read_bytes()


@pytest.mark.slow
def test_ray_retries_a_task_whose_worker_died(ray_cluster, tmp_path):
    import ray.cloudpickle as cp
    import sys

    cp.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "crashed"
    src = CrashOnce(str(marker), "shapes_00013")
    rep = build(src, tmp_path / "ray", ["synthetic"], BuildOptions(shard_size=9, workers=2, executor="ray", progress=False))
    assert marker.exists()  # the worker really died once
    assert rep.splits[0].samples == 40 and not rep.splits[0].failed_tasks
    build(DemoSource(40), tmp_path / "local", ["synthetic"], BuildOptions(shard_size=9, workers=1, progress=False))
    assert tars(tmp_path / "ray") == tars(tmp_path / "local")
    assert not list((tmp_path / "ray").rglob("*.tmp"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3_server(monkeypatch):
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import requests

    requests.post(f"{endpoint}/moto-api/reset", timeout=10)  # moto keeps buckets per process
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    import fsspec
    import fsspec.config

    fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = endpoint
    fs = fsspec.filesystem("s3", endpoint_url=endpoint, skip_instance_cache=True)
    fs.mkdir("datakit-test")
    yield fs
    fsspec.config.conf.get("s3", {}).pop("endpoint_url", None)
    server.stop()


def test_build_to_s3_uploads_whole_shards_and_an_index(s3_server, tmp_path):
    fs = s3_server
    rep = build(DemoSource(30), "s3://datakit-test/demo", None, BuildOptions(shard_size=8, workers=1, progress=False))
    assert rep.samples_written == 35
    names = sorted(p.split("/", 2)[2] for p in fs.find("datakit-test/demo"))
    assert "synthetic/index.json" in names and "synthetic/synthetic-000003.tar" in names
    assert not [n for n in names if n.endswith(".tmp")]
    index = load_index("s3://datakit-test/demo/synthetic")
    assert index.total == 30 and len(index.shards) == 4
    assert verify_index(index).ok
    local = build(DemoSource(30), tmp_path / "local", None, BuildOptions(shard_size=8, workers=1, progress=False))
    assert local.samples_written == 35
    for name, data in tars(tmp_path / "local").items():
        assert fs.cat_file(f"datakit-test/demo/{name}") == data
    keys = [s["__key__"] for s in iter_split(index, decode=False)]
    assert sorted(keys) == [f"shapes_{i:05d}" for i in range(30)]


def test_s3_build_resumes_from_remote_done_markers(s3_server):
    fs = s3_server
    build(DemoSource(30), "s3://datakit-test/r", ["synthetic"], BuildOptions(shard_size=8, workers=1, progress=False))
    fs.rm("datakit-test/r/synthetic/synthetic-000002.stats.json")  # as if killed before its marker landed
    fs.rm("datakit-test/r/synthetic/index.json")
    rep = build(DemoSource(30), "s3://datakit-test/r", ["synthetic"],
                BuildOptions(shard_size=8, workers=1, progress=False, resume=True))
    assert rep.splits[0].skipped_shards == 3 and rep.samples_written == 8
    assert load_index("s3://datakit-test/r/synthetic").total == 30
