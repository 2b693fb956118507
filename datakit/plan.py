"""Split a split's records into independent, deterministic shard tasks.

A task is a contiguous run of records: at most ``shard_size`` samples and, by the records'
size hints, at most ``shard_bytes``. The same records and limits always give the same tasks and
shard names, which is what makes ``--resume`` and multi-backend runs byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import InputError
from .sample import Record
from .shards.writer import sanitize_key


@dataclass(frozen=True)
class ShardTask:
    split: str
    index: int
    records: tuple[Record, ...]
    fingerprint: str = ""  # set by the build from digest(); the worker stamps it into the stats file

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"

    def digest(self, context: dict[str, Any]) -> str:
        """What produced this shard: its records and the split spec / writer settings in ``context``.
        A finished shard is reused by ``--resume`` only when this matches."""
        h = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode())
        for rec in self.records:
            h.update(json.dumps([rec.key, rec.data, rec.size_hint], sort_keys=True, default=str).encode())
        return h.hexdigest()[:32]


def plan_tasks(split: str, records: Sequence[Record], shard_size: int, shard_bytes: int) -> list[ShardTask]:
    if shard_size < 1 or shard_bytes < 1:
        raise InputError("shard size and byte limits must be positive")
    seen: dict[str, str] = {}
    clean: list[Record] = []
    for rec in records:
        key = sanitize_key(rec.key)
        if key in seen:
            raise InputError(f"{split}: keys {seen[key]!r} and {rec.key!r} both become {key!r}")
        seen[key] = rec.key
        clean.append(rec if key == rec.key else Record(key, rec.data, rec.size_hint))
    tasks: list[ShardTask] = []
    batch: list[Record] = []
    size = 0
    for rec in clean:
        if batch and (len(batch) >= shard_size or size + rec.size_hint > shard_bytes):
            tasks.append(ShardTask(split, len(tasks), tuple(batch)))
            batch, size = [], 0
        batch.append(rec)
        size += rec.size_hint
    if batch:
        tasks.append(ShardTask(split, len(tasks), tuple(batch)))
    return tasks
