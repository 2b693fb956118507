"""Minimal, deterministic tar I/O for webdataset shards.

Writing: fixed header fields (mtime 0, uid/gid 0, mode 0644) so equal inputs give equal bytes,
with a running sha256 over everything written. Reading: a streaming iterator that groups
consecutive members into samples by key and turns any truncation into a CorruptShardError.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tarfile
import threading
from typing import BinaryIO, Callable, Iterator

from ..errors import CorruptShardError

BLOCK = 512


def split_member_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is everything before the first dot of the basename."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1 :]


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


_HEAD_MODE = _octal(0o644, 8) + _octal(0, 8) + _octal(0, 8)  # mode, uid, gid
_HEAD_MTIME = _octal(0, 12)


def _template() -> tuple[bytearray, int]:
    """A ustar header with every fixed field set (name, size and checksum left blank) and its byte sum."""
    head = bytearray(BLOCK)
    head[100:124] = _HEAD_MODE
    head[136:148] = _HEAD_MTIME
    head[148:156] = b"        "  # checksum is computed with this field as spaces
    head[156] = ord("0")
    head[257:265] = b"ustar\x0000"
    return head, sum(head)


_TEMPLATE, _TEMPLATE_SUM = _template()


def member_header(name: str, size: int) -> bytes:
    """A 512-byte ustar header with fixed fields; long or non-ASCII names fall back to tarfile (GNU)."""
    raw = name.encode("utf-8")
    if len(raw) > 99 or not raw.isascii() or size >= 8**11:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, 0, 0o644
        return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")
    head = bytearray(_TEMPLATE)
    head[0 : len(raw)] = raw
    field = _octal(size, 12)
    head[124:136] = field
    head[148:156] = b"%06o\0 " % (_TEMPLATE_SUM + sum(raw) + sum(field))
    return bytes(head)


class TarStream:
    """Appends members to an open binary file and hashes the bytes as they go.

    Each sample's members go out in one ``writev`` call (headers, data and padding without
    copying). Hashing and writing release the GIL, so with ``background=True`` they run on a
    sink thread, one sample behind the caller, while the caller loads and encodes the next sample;
    an error of the sink (a full disk) is raised at the caller's next call.
    """

    QUEUED = 8  # samples handed to the sink thread and not yet written

    def __init__(self, fileobj: BinaryIO, background: bool = False) -> None:
        self._f = fileobj
        self._fd = fileobj.fileno() if hasattr(fileobj, "fileno") else None
        self._hash = hashlib.sha256()
        self.bytes_written = 0
        self._queue: queue.Queue[list[bytes] | None] | None = None
        self._error: BaseException | None = None
        if background and self._fd is not None:
            self._f.flush()
            self._queue = queue.Queue(self.QUEUED)
            self._sink = threading.Thread(target=self._drain, name="tar-sink", daemon=True)
            self._sink.start()

    def _write(self, parts: list[bytes]) -> None:
        for part in parts:
            self._hash.update(part)
        total = sum(len(p) for p in parts)
        if self._fd is None:
            self._f.write(b"".join(parts))
        else:
            done = os.writev(self._fd, parts)
            if done != total:  # short write: finish the rest with plain writes
                rest = b"".join(parts)[done:]
                while rest:
                    rest = rest[os.write(self._fd, rest):]

    def _drain(self) -> None:
        assert self._queue is not None
        while (parts := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(parts)
                except OSError as err:  # raised in the caller's thread at its next call
                    self._error = err

    def _emit(self, parts: list[bytes]) -> None:
        if self._error is not None:
            raise self._error
        self.bytes_written += sum(len(p) for p in parts)
        if self._queue is not None:
            self._queue.put(parts)
        else:
            self._write(parts)

    def add_many(self, members: list[tuple[str, bytes]]) -> None:
        """Append several members (one sample) in order."""
        parts: list[bytes] = []
        for name, data in members:
            parts.append(member_header(name, len(data)))
            parts.append(data)
            pad = -len(data) % BLOCK
            if pad:
                parts.append(_ZEROS[:pad])
        self._emit(parts)

    def add(self, name: str, data: bytes) -> None:
        self.add_many([(name, data)])

    def close(self) -> None:
        """Stop the sink thread after it wrote everything queued (also on abort)."""
        if self._queue is not None:
            self._queue.put(None)
            self._sink.join()
            self._queue = None

    def finish(self) -> str:
        """Write the end-of-archive blocks; return the sha256 of the whole archive."""
        self._emit([b"\0" * (2 * BLOCK)])
        self.close()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()


_ZEROS = bytes(BLOCK)


# ---------------------------------------------------------------- reading headers (shared with scan.py)

def header_number(field: bytes, label: str) -> int:
    """An octal number field (or GNU base-256 for large values) of a tar header."""
    if field and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise CorruptShardError(f"{label}: bad tar header number {text!r}") from None


def checksum_ok(header: bytes) -> bool:
    stored = header[148:156].replace(b"\0", b" ").strip()
    try:
        want = int(stored, 8)
    except ValueError:
        return False
    return sum(header[:148]) + 8 * 32 + sum(header[156:]) == want


def member_text(raw: bytes, label: str, pos: int) -> str:
    """A member name as UTF-8; anything else is a corrupt shard (never a UnicodeDecodeError)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptShardError(f"{label}: member name at byte {pos} is not UTF-8 ({raw[:40]!r})") from None


def header_name(header: bytes, label: str, pos: int) -> str:
    """The ustar name of a header (prefix/name)."""
    name = member_text(header[:100].split(b"\0", 1)[0], label, pos)
    if header[257:262] == b"ustar" and header[345] != 0:
        name = member_text(header[345:500].split(b"\0", 1)[0], label, pos) + "/" + name
    return name


def pax_path(data: bytes, label: str, pos: int) -> str | None:
    """The ``path`` record of a pax extended header, if any."""
    at = 0
    while at < len(data):
        space = data.find(b" ", at)
        if space < 0:
            break
        try:
            length = int(data[at:space])
        except ValueError:
            return None
        if length <= 0:
            return None
        record = data[space + 1 : at + length - 1]
        if record.startswith(b"path="):
            return member_text(record[5:], label, pos)
        at += length
    return None


_FILE_KINDS = (b"0", b"\0", b"7")
_SKIPPED_KINDS = (b"5", b"g")  # folders and global pax headers carry no sample
_KIND_NAMES = {b"1": "hard link", b"2": "symlink", b"3": "character device", b"4": "block device", b"6": "fifo"}


def name_problem(name: str) -> str | None:
    """Why a member name has no place in a shard: absolute or parent-relative (PEP 706's ``data`` filter)."""
    if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in name.split("/")[0]:
        return f"member {name!r} has an absolute or parent-relative path"
    return None


def _read_exactly(read: Callable[[int], bytes], n: int, label: str, pos: int) -> bytes:
    data = read(n)
    if len(data) < n:
        raise CorruptShardError(f"{label}: truncated at byte {pos + len(data)} ({n - len(data)} bytes missing)")
    return data


def iter_members(fileobj: BinaryIO, label: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular file in a tar stream, in stored order. Reads forward only (any file
    object or stream); links, devices and other special members, and absolute or parent-relative names,
    are a CorruptShardError; folders are skipped."""
    read = fileobj.read
    pos, long_name = 0, None
    while True:
        header = read(BLOCK)
        if not header:
            raise CorruptShardError(f"{label}: truncated at byte {pos} (no end-of-archive marker)")
        if len(header) < BLOCK:
            raise CorruptShardError(f"{label}: truncated tar header at byte {pos}")
        if header.count(0) == BLOCK:
            return
        if not checksum_ok(header):
            raise CorruptShardError(f"{label}: bad tar header checksum at byte {pos}")
        length, kind = header_number(header[124:136], label), header[156:157]
        data = _read_exactly(read, length, label, pos + BLOCK)
        pad = -length % BLOCK
        if pad:
            _read_exactly(read, pad, label, pos + BLOCK + length)
        if kind in (b"L", b"x"):
            long_name = member_text(data.rstrip(b"\0"), label, pos) if kind == b"L" else pax_path(data, label, pos)
        elif kind in _FILE_KINDS:
            name = long_name if long_name is not None else header_name(header, label, pos)
            problem = name_problem(name)
            if problem:
                raise CorruptShardError(f"{label}: {problem}")
            yield name, data
            long_name = None
        elif kind in _SKIPPED_KINDS:
            long_name = None
        else:
            name = long_name if long_name is not None else header_name(header, label, pos)
            what = _KIND_NAMES.get(kind, f"special member (type {kind!r})")
            raise CorruptShardError(f"{label}: member {name!r} is a {what}, not a regular file")
        pos += BLOCK + length + pad


def iter_samples(fileobj: BinaryIO, label: str) -> Iterator[dict[str, bytes | str]]:
    """Samples as ``{"__key__": key, ext: bytes, ...}``; members of a key must be contiguous."""
    current: dict[str, bytes | str] | None = None
    seen: set[str] = set()
    for name, data in iter_members(fileobj, label):
        key, ext = split_member_name(name)
        if current is None or current["__key__"] != key:
            if current is not None:
                yield current
            if key in seen:
                raise CorruptShardError(f"{label}: members of sample {key!r} are not contiguous")
            seen.add(key)
            current = {"__key__": key}
        if ext in current:
            raise CorruptShardError(f"{label}: sample {key!r} has member {ext!r} twice")
        current[ext] = data
    if current is not None:
        yield current
