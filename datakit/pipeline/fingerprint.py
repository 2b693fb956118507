"""What a shard's bytes depend on, as a digest: its records (keys, payloads, input files) and its context.

A record's digest covers its key, its payload and, for every input file, the file's path relative
to the source's roots, its size and either its mtime (``resume="stat"``, the default) or a hash of
its content (``resume="content"``). Paths are relative, so a tree moved or copied elsewhere (say,
ImageNet to node-local scratch) keeps its fingerprints when times are preserved (``mv``, ``rsync -a``);
with ``resume="content"`` even a plain ``cp`` does. A shard's fingerprint covers its records' digests
and the context (format version, the split's class table and members, the writer settings), and
nothing else: the listing's notes or another shard's inputs never change it.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..sources.base import InputFile, Record

RESUME_MODES = ("stat", "content")
HASH_THREADS = 8

# (key, record digest, ((relative path, size, stamp), ...)): kept in the shard's done marker so a
# later resume can say which record and file changed.
Entry = tuple[str, str, tuple[tuple[str, int, str], ...]]


@dataclass(frozen=True)
class Roots:
    """The source's input roots, longest first, for naming files relative to them."""

    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, roots: Sequence[str]) -> "Roots":
        norm = {os.path.normpath(os.path.abspath(r)) + os.sep for r in roots if r}
        return cls(tuple(sorted(norm, key=len, reverse=True)))

    def relative(self, path: str) -> str:
        for prefix in self.prefixes:
            if path.startswith(prefix):
                return path[len(prefix):]
        return path

    def strip(self, text: str) -> str:
        """``text`` with every root prefix removed (payload reprs name files by absolute path)."""
        for prefix in self.prefixes:
            text = text.replace(prefix, "")
        return text


def content_hash(path: str) -> str:
    """blake2b of a file's bytes (``resume="content"``); a missing file hashes to ``missing``."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return "missing"
    return h.hexdigest()


def _stamp(f: InputFile, mode: str, hashes: dict[str, str]) -> str:
    if f.digest:
        return f.digest
    if f.size < 0:
        return "missing"
    return hashes[f.path] if mode == "content" else str(f.mtime_ns)


def record_entry(rec: Record[Any], roots: Roots, mode: str, hashes: dict[str, str]) -> Entry:
    files = tuple((roots.relative(f.path), f.size, _stamp(f, mode, hashes)) for f in rec.inputs)
    body = f"{rec.key}\0{roots.strip(repr(rec.payload))}\0{files!r}".encode()
    return rec.key, hashlib.blake2b(body, digest_size=12).hexdigest(), files


def record_entries(records: Sequence[Record[Any]], roots: Roots, mode: str) -> tuple[Entry, ...]:
    """The entries of a shard's records; with ``mode="content"`` its files are hashed on threads."""
    hashes: dict[str, str] = {}
    if mode == "content":
        paths = sorted({f.path for r in records for f in r.inputs if not f.digest and f.size >= 0})
        with ThreadPoolExecutor(HASH_THREADS) as pool:
            hashes = dict(zip(paths, pool.map(content_hash, paths)))
    return tuple(record_entry(r, roots, mode, hashes) for r in records)


def task_fingerprint(context: bytes, entries: Iterable[Entry]) -> str:
    h = hashlib.sha256(context)
    for key, digest, _ in entries:
        h.update(f"{key}\0{digest}\n".encode())
    return h.hexdigest()[:32]


def describe_change(old: Sequence[Any] | None, new: Sequence[Entry]) -> str:
    """What differs between a finished shard's stored entries and the plan's: the first changed record
    and file, or what was added or removed."""
    if not old:
        return "its done marker predates per-record fingerprints"
    before = {str(e[0]): e for e in old}
    for key, digest, files in new:
        prev = before.get(key)
        if prev is None:
            return f"record {key!r} is new"
        if prev[1] == digest:
            continue
        for was, now in zip(prev[2], files):
            if list(was) != list(now):
                return f"record {key!r}: {now[0]} changed (size {was[1]} -> {now[1]}, stamp {was[2]} -> {now[2]})"
        return f"record {key!r} changed (its annotation or payload)"
    gone = sorted(set(before) - {e[0] for e in new})
    if gone:
        return f"record {gone[0]!r} is gone" + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else "")
    return "the split's class table, members or writer settings changed"
