"""A tight tar header scanner: the member table of a shard, for random access to its samples (the loader, wids-style offsets).

Reading a header is one 512-byte read; data is skipped by offset, so opening a shard costs one
small read per member instead of tarfile's per-member object machinery. Handles ustar, GNU long
names (``L``) and pax path records (``x``); truncation, bad checksums and member names that are
not UTF-8 raise CorruptShardError (never a UnicodeDecodeError, the wids failure of webdataset#330).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import CorruptShardError
from .tario import checksum_ok, header_name, header_number, member_text, pax_path, split_member_name

BLOCK = 512
ReadAt = Callable[[int, int], bytes]  # (offset, length) -> bytes (may be short at end of file)


@dataclass(frozen=True)
class SampleSpan:
    """One sample: its key, the byte range holding all its members, and (ext, offset, size) per member."""

    key: str
    start: int
    stop: int
    members: tuple[tuple[str, int, int], ...]  # offsets relative to ``start``


def scan_members(read_at: ReadAt, size: int, label: str) -> list[tuple[str, int, int]]:
    """(name, data offset, data size) of every regular file member, in stored order."""
    out: list[tuple[str, int, int]] = []
    pos, long_name = 0, None
    while True:
        if pos + BLOCK > size:
            raise CorruptShardError(f"{label}: truncated at byte {size} (no end-of-archive marker)")
        header = read_at(pos, BLOCK)
        if len(header) < BLOCK:
            raise CorruptShardError(f"{label}: truncated tar header at byte {pos}")
        if header.count(0) == BLOCK:
            return out
        if not checksum_ok(header):
            raise CorruptShardError(f"{label}: bad tar header checksum at byte {pos}")
        length = header_number(header[124:136], label)
        kind = header[156:157]
        data_at = pos + BLOCK
        if data_at + length > size:
            raise CorruptShardError(f"{label}: member at byte {pos} is truncated ({data_at + length - size} bytes missing)")
        if kind in (b"L", b"x"):
            data = read_at(data_at, length)
            long_name = member_text(data.rstrip(b"\0"), label, pos) if kind == b"L" else pax_path(data, label, pos)
        elif kind in (b"0", b"\0", b"7"):
            if long_name is not None:
                name = long_name
            else:
                name = header_name(header, label, pos)
            out.append((name, data_at, length))
            long_name = None
        else:
            long_name = None  # directories, links, global pax headers: not sample members
        pos = data_at + (length + BLOCK - 1) // BLOCK * BLOCK


def group_samples(members: list[tuple[str, int, int]], label: str) -> list[SampleSpan]:
    """Group consecutive members by key; a key that reappears later is a corrupt shard."""
    samples: list[SampleSpan] = []
    seen: set[str] = set()
    current: list[tuple[str, int, int]] = []
    key = None

    def close() -> None:
        start = current[0][1]
        stop = current[-1][1] + current[-1][2]
        samples.append(SampleSpan(key or "", start, stop, tuple((e, o - start, n) for e, o, n in current)))

    for name, offset, length in members:
        k, ext = split_member_name(name)
        if k != key:
            if current:
                close()
            if k in seen:
                raise CorruptShardError(f"{label}: members of sample {k!r} are not contiguous")
            seen.add(k)
            key, current = k, []
        if any(e == ext for e, _, _ in current):
            raise CorruptShardError(f"{label}: sample {k!r} has member {ext!r} twice")
        current.append((ext, offset, length))
    if current:
        close()
    return samples


def scan_samples(read_at: ReadAt, size: int, label: str) -> list[SampleSpan]:
    return group_samples(scan_members(read_at, size, label), label)
