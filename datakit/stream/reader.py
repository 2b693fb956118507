"""Random access to the samples of a split's shards: local files, http(s):// and s3:// via fsspec.

Local shards are read in place with ``pread`` through a member table (see ``tarscan``). Remote
shards are fetched whole, with retries and exponential back-off, checked against the index
(size, optionally sha256), and kept either in a shared on-disk cache with an LRU size limit or in
a per-process memory budget. Any truncation names the shard in a ``CorruptShardError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import CorruptShardError, InputError
from ..shards.index import INDEX_NAME, ShardEntry, SplitIndex, load_index, parse_index
from ..shards.scan import SampleSpan, scan_samples

DEFAULT_MEMORY = 512 << 20
VERIFY = ("size", "sha256")
ON_CORRUPT = ("raise", "skip")


@dataclass(frozen=True)
class ReadOptions:
    """Where shards come from and what to do when one is bad.

    ``cache_dir``/``cache_bytes``: a disk cache for remote shards shared by every process on the
    machine (LRU by last use; the limit must hold at least the largest shard). Without a cache
    dir, remote shards are held in memory, at most ``memory_bytes`` per loader worker or thread
    (default: the larger of 512 MiB and the largest shard).
    ``on_corrupt``: ``raise`` (default) or ``skip`` (warn once per shard and substitute samples).
    """

    cache_dir: str | None = None
    cache_bytes: int | None = None
    memory_bytes: int | None = None
    retries: int = 4
    backoff_s: float = 0.5
    verify: str = "size"
    on_corrupt: str = "raise"
    open_shards: int = 64
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def check(self, index: SplitIndex) -> None:
        """Reject impossible settings up front (a cache smaller than one shard deadlocks others)."""
        if self.verify not in VERIFY:
            raise InputError(f"verify must be one of {VERIFY}, not {self.verify!r}")
        if self.on_corrupt not in ON_CORRUPT:
            raise InputError(f"on_corrupt must be one of {ON_CORRUPT}, not {self.on_corrupt!r}")
        if self.retries < 0 or self.backoff_s < 0 or self.open_shards < 1:
            raise InputError("retries and backoff_s must be >= 0 and open_shards >= 1")
        biggest = max((e.filesize for e in index.shards), default=0)
        for name, limit in (("cache_bytes", self.cache_bytes), ("memory_bytes", self.memory_bytes)):
            if limit is not None and limit < biggest:
                raise InputError(f"{name}={limit} is smaller than the largest shard ({biggest} bytes); it must hold at least one shard")


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:
        pass
    return tuple(errors)


def _problem(data: bytes, entry: ShardEntry | None, verify: str) -> str | None:
    if entry is None:
        return None
    if entry.filesize > 0 and len(data) != entry.filesize:
        return f"got {len(data)} bytes, the index says {entry.filesize} (truncated transfer or stale shard)"
    if verify == "sha256" and entry.sha256 and hashlib.sha256(data).hexdigest() != entry.sha256:
        return "sha256 does not match the index"
    return None


def fetch(url: str, entry: ShardEntry | None, opts: ReadOptions) -> bytes:
    """The whole object at ``url``; retried with back-off until it is complete and matches the index."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(opts.storage_options))
    except (ImportError, ValueError) as err:
        raise InputError(f"cannot open {url}: {err} (s3:// needs s3fs, http(s):// needs aiohttp)") from None
    transient = _transient_errors()
    delay, problem = opts.backoff_s, "no attempt"
    for attempt in range(opts.retries + 1):
        try:
            data = fs.cat_file(path)
            problem = _problem(data, entry, opts.verify)
            if problem is None:
                return data
        except FileNotFoundError:
            raise InputError(f"shard not found: {url}") from None
        except transient as err:
            problem = f"read failed ({type(err).__name__}: {err})"
        if attempt < opts.retries:
            time.sleep(delay)
            delay *= 2
    raise CorruptShardError(f"{url}: {problem}; gave up after {opts.retries + 1} tries")


def open_index(path: str | Path, storage_options: Mapping[str, Any] | None = None,
               opts: ReadOptions = ReadOptions()) -> SplitIndex:
    """Load a split index from a folder, an index file or a URL (with fsspec storage options)."""
    text = str(path)
    if not is_remote(text):
        return load_index(_local(text))
    url = text if text.endswith(".json") else text.rstrip("/") + "/" + INDEX_NAME
    read = ReadOptions(retries=opts.retries, backoff_s=opts.backoff_s, storage_options=dict(storage_options or {}))
    data = fetch(url, None, read)
    try:
        obj = json.loads(data)
    except ValueError as err:
        raise InputError(f"{url}: index is not valid JSON ({err})") from None
    return parse_index(obj, url.rsplit("/", 1)[0], url)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so processes of one machine download a shard once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: downloads may be duplicated, never corrupted
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class DiskCache:
    """Whole remote shards in a local folder, least recently used evicted beyond ``limit`` bytes."""

    def __init__(self, directory: str, limit: int | None) -> None:
        self.directory = Path(directory)
        self.limit = limit
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, url: str) -> Path:
        tag = hashlib.sha1(url.encode()).hexdigest()[:16]
        return self.directory / f"{tag}-{url.rsplit('/', 1)[-1]}"

    @staticmethod
    def _fresh(path: Path, entry: ShardEntry) -> bool:
        try:
            return entry.filesize <= 0 or path.stat().st_size == entry.filesize
        except FileNotFoundError:
            return False

    def get(self, url: str, entry: ShardEntry, download: Callable[[], bytes]) -> str:
        path = self._path(url)
        if not self._fresh(path, entry):
            with _locked(path.with_name(path.name + ".lock")):
                if not self._fresh(path, entry):
                    data = download()
                    self._make_room(len(data), path)
                    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, path)
        try:
            os.utime(path)
        except FileNotFoundError:  # evicted by another process in between: fetch again
            return self.get(url, entry, download)
        return str(path)

    def _make_room(self, incoming: int, keep: Path) -> None:
        if self.limit is None:
            return
        files = []
        for p in self.directory.iterdir():
            if p.suffix in (".tmp", ".lock") or p == keep:
                continue
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total + incoming <= self.limit:
                break
            p.unlink(missing_ok=True)
            total -= size


class OpenShard:
    """One shard's member table plus a reader of byte ranges (a file descriptor or bytes in memory)."""

    def __init__(self, label: str, read_at: Callable[[int, int], bytes], size: int, entry: ShardEntry,
                 held_bytes: int, close: Callable[[], None] = lambda: None) -> None:
        self.label = label
        self.held_bytes = held_bytes
        self._read_at = read_at
        self._close = close
        if entry.filesize > 0 and size != entry.filesize:
            close()
            raise CorruptShardError(f"{label}: {size} bytes on disk, the index says {entry.filesize} (truncated or replaced)")
        try:
            self.samples: list[SampleSpan] = scan_samples(read_at, size, label)
        except CorruptShardError:
            close()
            raise
        if len(self.samples) != entry.nsamples:
            close()
            raise CorruptShardError(f"{label}: holds {len(self.samples)} samples, the index says {entry.nsamples}")

    def read(self, i: int) -> dict[str, Any]:
        """The raw members of sample ``i``: ``{"__key__": key, ext: bytes}``."""
        span = self.samples[i]
        buf = self._read_at(span.start, span.stop - span.start)
        if len(buf) != span.stop - span.start:
            raise CorruptShardError(f"{self.label}: short read of sample {span.key!r} (file changed?)")
        out: dict[str, Any] = {"__key__": span.key}
        for ext, offset, size in span.members:
            out[ext] = buf[offset : offset + size]
        return out

    def close(self) -> None:
        self._close()


def _open_local(path: str, entry: ShardEntry, label: str | None = None) -> OpenShard:
    """A shard file read in place; ``label`` names it in errors (the URL of a cached copy)."""
    try:
        handle = open(path, "rb", buffering=0)  # closed explicitly on eviction, or by GC with its pool
    except FileNotFoundError:
        raise InputError(f"shard not found: {label or path}") from None
    except OSError as err:
        raise CorruptShardError(f"{label or path}: cannot open shard ({err.strerror})") from None
    fd = handle.fileno()
    size = os.fstat(fd).st_size
    return OpenShard(label or path, lambda off, n: os.pread(fd, n, off), size, entry, 0, handle.close)


def _open_bytes(label: str, data: bytes, entry: ShardEntry) -> OpenShard:
    view = memoryview(data)
    return OpenShard(label, lambda off, n: bytes(view[off : off + n]), len(data), entry, len(data))


class ShardPool:
    """The open shards of one index for one loader worker or thread (an LRU by count and by bytes
    held in memory). It is a cache, never state: each worker/thread builds its own lazily.
    """

    def __init__(self, index: SplitIndex, opts: ReadOptions) -> None:
        self.index = index
        self.opts = opts
        biggest = max((e.filesize for e in index.shards), default=0)
        self.memory_limit = opts.memory_bytes if opts.memory_bytes is not None else max(DEFAULT_MEMORY, biggest)
        self.disk = DiskCache(opts.cache_dir, opts.cache_bytes) if opts.cache_dir else None
        self._open: OrderedDict[int, OpenShard] = OrderedDict()
        self._bad: dict[int, CorruptShardError] = {}

    def label(self, shard: int) -> str:
        return self.index.shard_path(self.index.shards[shard])

    def read(self, shard: int, i: int) -> dict[str, Any]:
        return self._get(shard).read(i)

    def is_bad(self, shard: int) -> bool:
        """True once the shard failed to open in this process (truncated, wrong size, bad tar)."""
        return shard in self._bad

    def _get(self, shard: int) -> OpenShard:
        if shard in self._bad:
            raise CorruptShardError(str(self._bad[shard]))
        found = self._open.get(shard)
        if found is not None:
            self._open.move_to_end(shard)
            return found
        try:
            opened = self._open_shard(self.index.shards[shard])
        except CorruptShardError as err:
            self._bad[shard] = err
            raise
        self._open[shard] = opened
        self._evict()
        return opened

    def _open_shard(self, entry: ShardEntry) -> OpenShard:
        path = self.index.shard_path(entry)
        if not is_remote(path):
            return _open_local(_local(path), entry)
        if self.disk is not None:
            for _ in range(3):  # another process may evict the file between download and open
                local = self.disk.get(path, entry, lambda: fetch(path, entry, self.opts))
                try:
                    return _open_local(local, entry, label=path)
                except InputError:
                    continue
            raise CorruptShardError(f"{path}: evicted from the cache before it could be opened; raise cache_bytes")
        return _open_bytes(path, fetch(path, entry, self.opts), entry)

    def _evict(self) -> None:
        held = sum(s.held_bytes for s in self._open.values())
        while len(self._open) > 1 and (len(self._open) > self.opts.open_shards or held > self.memory_limit):
            _, old = self._open.popitem(last=False)
            held -= old.held_bytes
            old.close()

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
