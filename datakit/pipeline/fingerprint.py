"""What a shard's bytes depend on, as digests: its records (keys, payloads, input files) and its context.

A record's digest covers its key, its payload and, for every input file, the file's path relative
to the source's roots, its size and either its mtime (the ``stat`` digest) or a hash of its content
(the ``content`` digest). A shard's fingerprint in each mode covers its records' digests and the
context (format version, the split's class table and members, the writer settings), and nothing
else: the listing's notes or another shard's inputs never change it.

``--resume`` (``stat``) keeps a shard whose inputs have the same relative paths, sizes and mtimes, so a
tree moved with ``mv`` or ``rsync -a`` keeps its shards; ``--resume=content`` keeps one whose inputs have
the same content, so even a plain ``cp`` to node-local scratch does. The worker records both
fingerprints in the done marker (hashing the inputs it just read), so either mode can resume any build.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..sources.base import InputFile, Record

RESUME_MODES = ("stat", "content")
HASH_THREADS = 8

# (relative path, size, mtime stamp, content stamp); a stamp is "" when not computed, "missing"
# for a file that was not there, or the container's checksum (a zip member's CRC) for both
FileEntry = tuple[str, int, str, str]
# (key, stat digest, content digest, files): kept in the shard's done marker, so a later resume
# can say which record and file changed
Entry = tuple[str, str, str, tuple[FileEntry, ...]]


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


def bytes_hash(data: bytes) -> str:
    """The content hash of bytes already in memory: what ``content_hash`` gives for a file holding them."""
    return f"crc32:{zlib.crc32(data):08x}"


def content_hash(path: str) -> str:
    """A CRC-32 of a file's bytes (with the size beside it in every entry, a change that keeps both goes
    unseen once in 4 billion changed files: enough to decide what to rebuild, at ~3 GB/s); ``missing``
    for a missing file."""
    crc = 0
    try:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
    except OSError:
        return "missing"
    return f"crc32:{crc:08x}"


def hash_inputs(records: Sequence[Record[Any]], threads: int = 1, known: dict[str, str] | None = None) -> dict[str, str]:
    """The content hash of every plain input file of ``records``. ``known``: hashes a worker already took
    from the bytes it loaded; the rest are read again (from the page cache in a worker; the driver of
    ``--resume=content`` reads cold files on threads)."""
    have = known or {}
    paths = sorted({f.path for r in records for f in r.inputs if not f.digest and f.size >= 0} - set(have))
    if threads <= 1:
        return {**have, **{p: content_hash(p) for p in paths}}
    with ThreadPoolExecutor(threads) as pool:
        return {**have, **dict(zip(paths, pool.map(content_hash, paths)))}


def _file(f: InputFile, roots: Roots, hashes: dict[str, str] | None) -> FileEntry:
    if f.digest:
        return roots.relative(f.path), f.size, f.digest, f.digest
    if f.size < 0:
        return roots.relative(f.path), f.size, "missing", "missing"
    return roots.relative(f.path), f.size, str(f.mtime_ns), (hashes or {}).get(f.path, "")


def _digest(key: str, payload: str, files: tuple[FileEntry, ...], column: int) -> str:
    body = f"{key}\0{payload}\0" + "\0".join(f"{p}|{s}|{f[column]}" for f in files for p, s in [(f[0], f[1])])
    return hashlib.blake2b(body.encode(), digest_size=12).hexdigest()


def record_entries(records: Sequence[Record[Any]], roots: Roots, hashes: dict[str, str] | None = None) -> tuple[Entry, ...]:
    """The entries of a shard's records; content digests are "" unless ``hashes`` are given."""
    out = []
    for rec in records:
        files = tuple(_file(f, roots, hashes) for f in rec.inputs)
        payload = roots.strip(repr(rec.payload))
        content = _digest(rec.key, payload, files, 3) if hashes is not None else ""
        out.append((rec.key, _digest(rec.key, payload, files, 2), content, files))
    return tuple(out)


def fingerprint(context: bytes, entries: Iterable[Entry], mode: str) -> str:
    """A shard's fingerprint in ``mode`` (``stat`` or ``content``)."""
    column = 1 if mode == "stat" else 2
    h = hashlib.sha256(context + mode.encode())
    for entry in entries:
        h.update(f"{entry[0]}\0{entry[column]}\n".encode())
    return h.hexdigest()[:32]


def describe_change(old: Sequence[Any] | None, new: Sequence[Entry], mode: str) -> str:
    """What differs between a finished shard's stored entries and the plan's: the first changed record
    and file, or what was added or removed."""
    if not old:
        return "its done marker predates per-record fingerprints"
    column = 1 if mode == "stat" else 2
    stamp = 2 if mode == "stat" else 3
    before = {str(e[0]): e for e in old}
    for entry in new:
        prev = before.get(entry[0])
        if prev is None:
            return f"record {entry[0]!r} is new"
        if prev[column] == entry[column]:
            continue
        for was, now in zip(prev[3], entry[3]):
            if (was[0], was[1], was[stamp]) != (now[0], now[1], now[stamp]):
                what = "mtime" if mode == "stat" else "content"
                return f"record {entry[0]!r}: {now[0]} changed (size {was[1]} -> {now[1]}, {what} differs)"
        return f"record {entry[0]!r} changed (its annotation or payload)"
    gone = sorted(set(before) - {e[0] for e in new})
    if gone:
        return f"record {gone[0]!r} is gone" + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else "")
    return "the split's class table, members or writer settings changed"
