"""Re-read every shard of a split: size, sha256, sample count, member set, and a full decode."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..errors import CorruptShardError, SampleError
from ..executors import local_executor
from .codecs import decode_mask, decode_rgb
from .index import ShardEntry, SplitIndex, find_indexes
from .reader import HashingReader, open_shard
from .tario import iter_samples


@dataclass
class Problem:
    shard: str
    key: str
    what: str

    def __str__(self) -> str:
        where = f"{self.shard}" + (f" sample {self.key}" if self.key else "")
        return f"{where}: {self.what}"


@dataclass
class VerifyReport:
    name: str
    shards: int = 0
    samples: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_sample(index: SplitIndex, raw: dict[str, Any]) -> str | None:
    spec = index.spec
    members = sorted(k for k in raw if k != "__key__")
    if members != spec.members():
        return f"members {members} differ from the split's {spec.members()}"
    size = None
    if "jpg" in raw:
        data = raw["jpg"]
        if not data.startswith(b"\xff\xd8"):
            return "jpg member is not JPEG bytes"
        img = decode_rgb(data)
        size = img.shape[:2]
    allowed = None
    if spec.classes is not None:
        allowed = {e.id for e in spec.classes.entries}
        if spec.classes.ignore_index is not None:
            allowed.add(spec.classes.ignore_index)
    for member in spec.masks:
        arr = decode_mask(raw[member.ext])
        want = np.uint16 if member.bits == 16 else np.uint8
        if arr.dtype != want:
            return f"{member.ext} is {arr.dtype}, the index says {member.bits}-bit"
        if size is not None and arr.shape != size:
            return f"{member.ext} is {arr.shape[1]}x{arr.shape[0]}, image is {size[1]}x{size[0]}"
        if allowed is not None and member.role == "semantic":
            extra = set(np.unique(arr).tolist()) - allowed - {member.fill}
            if extra:
                return f"{member.ext} holds ids {sorted(extra)[:5]} not in the class table"
    if "cls" in raw:
        int(raw["cls"])
    if "json" in raw:
        json.loads(raw["json"])
    return None


def verify_shard(index: SplitIndex, entry: ShardEntry, progress: Any = None) -> list[Problem]:
    """Problems found in one shard (empty when it is sound)."""
    name = entry.url
    problems: list[Problem] = []
    count = 0
    key = ""
    try:
        with open_shard(index, entry) as f:
            reader = HashingReader(f)
            for raw in iter_samples(reader, name):
                key = raw["__key__"]
                try:
                    what = _check_sample(index, raw)
                except (SampleError, OSError, ValueError, SyntaxError) as err:
                    what = f"does not decode ({err})"
                if what:
                    problems.append(Problem(name, key, what))
                count += 1
                if progress is not None:
                    progress(1)
            reader.drain()
    except CorruptShardError as err:
        return problems + [Problem(name, key, f"unreadable after this sample: {err}" if key else str(err))]
    if reader.count != entry.filesize:
        problems.append(Problem(name, "", f"size {reader.count} bytes, the index says {entry.filesize}"))
    if entry.sha256 and reader.hash.hexdigest() != entry.sha256:
        problems.append(Problem(name, "", "sha256 does not match the index (the file changed after it was written)"))
    if count != entry.nsamples:
        problems.append(Problem(name, "", f"{count} samples, the index says {entry.nsamples}"))
    return problems


def _verify_task(index: SplitIndex, entry: ShardEntry, progress: Any) -> list[Problem]:
    return verify_shard(index, entry, progress)


def verify_index(index: SplitIndex, workers: int = 1, progress: Any = None) -> VerifyReport:
    report = VerifyReport(f"{index.spec.dataset}/{index.spec.split}", len(index.shards), index.total)
    results = local_executor(partial(_verify_task, index), list(index.shards), workers, progress or (lambda n: None))
    for entry, res in zip(index.shards, results):
        if res.error:
            report.problems.append(Problem(entry.url, "", res.error))
        else:
            report.problems.extend(res.value)
    return report


def verify(path: str, workers: int = 1, progress: Any = None) -> list[VerifyReport]:
    """Verify every split found at ``path`` (a split folder, an index file or a dataset root)."""
    return [verify_index(ix, workers, progress) for ix in find_indexes(path)]
