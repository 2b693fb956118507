"""The per-split index: ``<split>/index.json`` beside the shards.

It is a wids shard index (``__kind__``, ``shardlist`` with ``url``/``nsamples``/``filesize``)
so wids can read it, extended with a ``datakit`` block: class table, ignore id, members, shard
hashes and the build's failure counts. It holds no timestamps: equal builds give equal indexes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .. import __version__
from ..errors import InputError
from ..io import RetryPolicy, is_remote, join, local_path, read_object
from .spec import SplitSpec
from .writer import ShardStats, atomic_write_bytes

INDEX_NAME = "index.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ShardEntry:
    url: str
    nsamples: int
    filesize: int
    sha256: str


@dataclass(frozen=True)
class SplitIndex:
    """A parsed index; ``base`` is the folder (or URL prefix) the shard urls are relative to."""

    base: str
    spec: SplitSpec
    shards: tuple[ShardEntry, ...]
    failures: dict[str, int]
    extra: dict[str, Any]

    @property
    def total(self) -> int:
        return sum(s.nsamples for s in self.shards)

    @property
    def total_bytes(self) -> int:
        return sum(s.filesize for s in self.shards)

    def shard_path(self, entry: ShardEntry) -> str:
        return join(self.base, entry.url)

    def fingerprint(self) -> str:
        """Identifies the dataset's content, for rejecting a resume state from another dataset."""
        import hashlib

        h = hashlib.sha256()
        for s in self.shards:
            h.update(f"{s.url}:{s.nsamples}:{s.sha256};".encode())
        return h.hexdigest()[:16]


def make_index(spec: SplitSpec, stats: list[ShardStats], writer_config: dict[str, Any]) -> dict[str, Any]:
    shards = [s for s in sorted(stats, key=lambda s: s.name) if s.file]
    failures: dict[str, int] = {}
    listed = []
    for s in stats:
        for reason, n in s.failure_counts.items():
            failures[reason] = failures.get(reason, 0) + n
        listed.extend(f.__dict__ for f in s.failures)
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": f"{spec.dataset}/{spec.split}",
        "shardlist": [
            {"url": s.file, "nsamples": s.nsamples, "filesize": s.bytes, "sha256": s.sha256} for s in shards
        ],
        "datakit": {
            "format_version": FORMAT_VERSION,
            "created_by": f"datakit {__version__}",
            **spec.to_json(),
            "total_samples": sum(s.nsamples for s in shards),
            "total_bytes": sum(s.bytes for s in shards),
            "converted_images": sum(s.converted_images for s in stats),
            "filled_masks": sum(s.filled_masks for s in stats),
            "failures": dict(sorted(failures.items())),
            "failed_samples": sorted(listed, key=lambda f: f["key"])[:1000],
            "writer": writer_config,
        },
    }


def index_bytes(obj: dict[str, Any]) -> bytes:
    """The one serialisation of an index (local and remote copies are byte-identical)."""
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def write_index(directory: Path, obj: dict[str, Any]) -> Path:
    path = Path(directory) / INDEX_NAME
    atomic_write_bytes(path, index_bytes(obj))
    return path


def parse_index(obj: dict[str, Any], base: str, where: str) -> SplitIndex:
    try:
        dk = obj["datakit"]
        if dk.get("format_version", 0) > FORMAT_VERSION:
            raise InputError(f"{where}: index format {dk['format_version']} is newer than this datakit understands")
        spec = SplitSpec.from_json(dk)
        shards = tuple(
            ShardEntry(e["url"], int(e["nsamples"]), int(e["filesize"]), e.get("sha256", ""))
            for e in obj["shardlist"]
        )
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{where}: not a datakit index ({err})") from None
    extra = {k: v for k, v in dk.items() if k not in ("failures",)}
    return SplitIndex(base, spec, shards, dict(dk.get("failures", {})), extra)


def index_url(path: str | Path) -> str:
    """The index file of a split folder, index file or URL."""
    text = str(path)
    if text.endswith(".json"):
        return text
    if is_remote(text) or not Path(local_path(text)).is_file():
        return join(text, INDEX_NAME)
    return text


def load_index(path: str | Path, storage_options: Mapping[str, Any] | None = None,
               policy: RetryPolicy = RetryPolicy()) -> SplitIndex:
    """The one index loader: a local split folder or index file, or any fsspec URL (retried)."""
    url = index_url(path)
    try:
        data = read_object(url, policy=policy, storage_options=storage_options)
    except InputError as err:
        if str(err).startswith("not found"):
            raise InputError(f"no datakit index at {path} (expected {url})") from None
        raise
    try:
        obj = json.loads(data)
    except ValueError as err:
        raise InputError(f"{url}: index is not valid JSON ({err})") from None
    return parse_index(obj, url.rsplit("/", 1)[0] if is_remote(url) else str(Path(local_path(url)).parent), url)


def find_indexes(path: str | Path) -> list[SplitIndex]:
    """All split indexes under a path: a split folder, an index file, or a dataset root."""
    if is_remote(path):
        return [load_index(str(path))]
    p = Path(local_path(path))
    if not p.exists():
        raise InputError(f"no such file or folder: {path}")
    if p.is_file() or (p / INDEX_NAME).exists():
        return [load_index(p)]
    found = sorted(q.parent for q in p.glob(f"*/{INDEX_NAME}"))
    if not found:
        raise InputError(f"no datakit index in {path} or its sub-folders")
    return [load_index(q) for q in found]
