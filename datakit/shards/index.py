"""The per-split index: ``<split>/index.json`` beside the shards.

It is a wids shard index (``__kind__``, ``shardlist`` with ``url``/``nsamples``/``filesize``)
so wids can read it, extended with a ``datakit`` block: class table, ignore id, members and their
mask encoding, shard hashes, the record order, what listing the inputs found, and the build's
failure counts. It holds no timestamps (equal builds give equal indexes) and a sha256 of its own
content (``digest``), so an edited or damaged index is caught. Shard URLs are plain file names
in the index's folder; an index naming anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import __version__
from ..errors import CorruptShardError, InputError
from ..io import RetryPolicy, is_remote, join, local_path, read_object
from ..io.atomic import json_bytes
from ..jobs.parts import seal, seal_state
from .spec import SplitSpec
from .writer import ShardStats

INDEX_NAME = "index.json"
FORMAT_VERSION = 2  # 2: self-digest, record order, mask encodings, listing facts


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
    seal: str = "sealed"  # see jobs.parts.seal_state; "unsealed" for indexes written before digests

    @property
    def listing(self) -> dict[str, Any]:
        """What listing the inputs found (counts, shortfalls, skipped folders...), as the build recorded it."""
        return dict(self.extra.get("listing", {}))

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
        return content_id((s.url, s.nsamples, s.sha256) for s in self.shards)


def content_id(shards: Iterable[tuple[str, int, str]]) -> str:
    """16 hex digits naming a split's content: its shards' (url, sample count, sha256) in order."""
    h = hashlib.sha256()
    for url, nsamples, sha256 in shards:
        h.update(f"{url}:{nsamples}:{sha256};".encode())
    return h.hexdigest()[:16]


def index_content_id(obj: dict[str, Any]) -> str:
    """``content_id`` of an index as ``make_index`` returns it (before it is parsed)."""
    return content_id((s["url"], s["nsamples"], s["sha256"]) for s in obj["shardlist"])


def make_index(spec: SplitSpec, stats: list[ShardStats], writer_config: dict[str, Any],
               facts: dict[str, Any] | None = None, extra_files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """The index of a finished split, sealed with its own digest. ``facts``: what listing the inputs
    found; ``extra_files``: files the source adds beside the shards (their sha256 is recorded)."""
    shards = [s for s in sorted(stats, key=lambda s: s.name) if s.file]
    failures: dict[str, int] = {}
    listed: list[dict[str, Any]] = []
    for s in stats:
        for reason, n in s.failure_counts.items():
            failures[reason] = failures.get(reason, 0) + n
        listed.extend(f.__dict__ for f in s.failures)
    index = {
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
            "listing": dict(sorted((facts or {}).items())),
            "record_order": writer_config.get("record_order", {"kind": "source"}),
            "extra_files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted((extra_files or {}).items())},
        },
    }
    return seal(index)


def index_bytes(obj: dict[str, Any]) -> bytes:
    """The one serialisation of an index (local and remote copies are byte-identical); indented, as
    people read it."""
    return json_bytes(seal(obj))


def write_index(directory: str | Path, obj: dict[str, Any]) -> str:
    """Write a split's index through the output layer (for shards written without a build)."""
    from ..io.output import open_output

    folder = Path(local_path(str(directory)))
    return open_output(str(folder.parent)).write_bytes(folder.name, INDEX_NAME, index_bytes(obj))


def shard_name_problem(url: str) -> str | None:
    """Why a shard URL of an index is not acceptable (the writer only writes plain ``.tar`` names)."""
    if not url or "/" in url or "\\" in url or url in (".", "..") or "://" in url or not url.endswith(".tar"):
        return f"shard {url!r} is not a .tar file name in the index's folder"
    return None


def parse_index(obj: dict[str, Any], base: str, where: str) -> SplitIndex:
    state = seal_state(obj)
    if state == "broken":
        raise CorruptShardError(f"{where}: the index was changed after it was written (its digest does not match); "
                                "rebuild the split or restore the index")
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
    for entry in shards:
        problem = shard_name_problem(entry.url)
        if problem:
            raise InputError(f"{where}: {problem}")
    extra = {k: v for k, v in dk.items() if k not in ("failures",)}
    return SplitIndex(base, spec, shards, dict(dk.get("failures", {})), extra, state)


def index_url(path: str | Path) -> str:
    """The index file of a split folder, index file or URL."""
    text = str(path)
    if text.endswith(".json"):
        return text
    if is_remote(text) or not Path(local_path(text)).is_file():
        return join(text, INDEX_NAME)
    raise InputError(f"{path} is not a datakit index: give a split folder, its {INDEX_NAME} or a dataset root")


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
