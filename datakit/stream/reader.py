"""Random access to the samples of a split's shards: local files, http(s):// and s3:// via fsspec.

Local shards are read in place with ``pread`` through a member table (``shards.scan``). Remote
shards are fetched whole with ``datakit.io.read_object`` (retries, size and optionally sha256
checked against the index) into the node-shared disk cache (``cache.DiskCache``: one download
per shard per node), or, with ``cache="memory"``, into each process's own memory. A background
thread downloads the shards the next batches need (read-ahead). Truncation or damage names the
shard in a ``CorruptShardError``.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import CorruptShardError, InputError
from ..io import Expect, RetryPolicy, is_remote, local_path, read_object
from ..shards.index import ShardEntry, SplitIndex
from ..shards.scan import SampleSpan, scan_samples
from .cache import DiskCache, default_cache_dir

DEFAULT_MEMORY = 512 << 20
DEFAULT_CACHE_BYTES = 64 << 30
VERIFY = ("size", "sha256")
ON_CORRUPT = ("raise", "skip")
CACHES = ("disk", "memory")


@dataclass(frozen=True)
class ReadOptions:
    """Where shards come from and what to do when one is bad.

    Remote shards go through ``cache``:

    - ``disk`` (default): a node-shared folder, ``cache_dir`` (default ``$DATAKIT_CACHE_DIR`` or
      ``~/.cache/datakit/shards``), holding at most ``cache_bytes`` (default 64 GiB). Every rank,
      worker and thread of a machine shares it, so each shard is downloaded once per node.
    - ``memory``: each loader worker or thread keeps up to ``memory_bytes`` of shards (default:
      the larger of 512 MiB and the largest shard); every process downloads for itself.

    The budget sizes the default shuffle window of remote data, and a budget below the window's
    working set is refused at construction (see ``budget``). ``readahead``: shards downloaded
    ahead of need, in the background (disk cache). ``on_corrupt``: ``raise`` (default) or ``skip``
    (warn once per shard and substitute samples).
    """

    cache: str = "disk"
    cache_dir: str | None = None
    cache_bytes: int | None = None
    memory_bytes: int | None = None
    readahead: int = 2
    retries: int = 4
    backoff_s: float = 0.5
    verify: str = "size"
    on_corrupt: str = "raise"
    open_shards: int = 64
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def check(self, index: SplitIndex) -> None:
        """Reject impossible settings up front (a budget smaller than one shard deadlocks others)."""
        if self.verify not in VERIFY:
            raise InputError(f"verify must be one of {VERIFY}, not {self.verify!r}")
        if self.on_corrupt not in ON_CORRUPT:
            raise InputError(f"on_corrupt must be one of {ON_CORRUPT}, not {self.on_corrupt!r}")
        if self.cache not in CACHES:
            raise InputError(f"cache must be one of {CACHES}, not {self.cache!r}")
        if self.retries < 0 or self.backoff_s < 0 or self.open_shards < 1 or self.readahead < 0:
            raise InputError("retries, backoff_s and readahead must be >= 0 and open_shards >= 1")
        biggest = max((e.filesize for e in index.shards), default=0)
        for name, limit in (("cache_bytes", self.cache_bytes), ("memory_bytes", self.memory_bytes)):
            if limit is not None and limit < biggest:
                raise InputError(f"{name}={limit} is smaller than the largest shard ({biggest} bytes); "
                                 "it must hold at least one shard")
        if self.cache == "disk" and any(is_remote(index.shard_path(e)) for e in index.shards):
            self._check_disk(index)

    def _check_disk(self, index: SplitIndex) -> None:
        """Warn when the cache's file system cannot hold what the cache will keep of this split."""
        folder = Path(self.cache_dir or default_cache_dir())
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        want = min(self.budget(index), index.total_bytes)
        if free < want:
            warnings.warn(f"the shard cache {self.cache_dir or default_cache_dir()} has {free} bytes free but may keep "
                          f"{want} of {index.spec.dataset}/{index.spec.split}; set cache_bytes (the same on every node) "
                          f"or another cache_dir", RuntimeWarning, stacklevel=4)

    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.backoff_s)

    def budget(self, index: SplitIndex) -> int:
        """Bytes of remote shards one node (disk) or one process (memory) may hold at once."""
        if self.cache == "disk":
            return self.cache_bytes if self.cache_bytes is not None else DEFAULT_CACHE_BYTES
        biggest = max((e.filesize for e in index.shards), default=0)
        return self.memory_bytes if self.memory_bytes is not None else max(DEFAULT_MEMORY, biggest)

    def disk_cache(self) -> DiskCache:
        limit = self.cache_bytes if self.cache_bytes is not None else DEFAULT_CACHE_BYTES
        return DiskCache(self.cache_dir or default_cache_dir(), limit)


def fetch(url: str, entry: ShardEntry, opts: ReadOptions) -> bytes:
    """A whole remote shard, retried until it matches the index (size; sha256 with verify='sha256')."""
    expect = Expect(entry.filesize, entry.sha256, opts.verify == "sha256")
    try:
        return read_object(url, expect, opts.policy, opts.storage_options)
    except InputError as err:
        if str(err).startswith("not found"):
            raise InputError(f"shard not found: {url}") from None
        raise


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

    def read_member(self, i: int, ext: str) -> bytes | None:
        """One member's bytes of sample ``i`` (None when the sample has no such member)."""
        span = self.samples[i]
        for name, offset, size in span.members:
            if name == ext:
                return self._read_at(span.start + offset, size)
        return None

    def close(self) -> None:
        self._close()


def _open_local(path: str, entry: ShardEntry) -> OpenShard:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise InputError(f"shard not found: {path}") from None
    except OSError as err:
        raise CorruptShardError(f"{path}: cannot open shard ({err.strerror})") from None
    size = os.fstat(fd).st_size
    return OpenShard(path, lambda off, n: os.pread(fd, n, off), size, entry, 0, lambda: os.close(fd))


def _open_bytes(label: str, data: bytes, entry: ShardEntry) -> OpenShard:
    view = memoryview(data)
    return OpenShard(label, lambda off, n: bytes(view[off : off + n]), len(data), entry, len(data))


class ReadAhead:
    """One daemon thread per process that downloads upcoming shards into the disk cache."""

    def __init__(self, fetch_one: Callable[[int], None]) -> None:
        self._fetch_one = fetch_one
        self._queue: queue.Queue[int] = queue.Queue()
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="datakit-readahead", daemon=True)
        self._thread.start()

    def want(self, shards: Iterable[int]) -> None:
        with self._lock:
            for s in shards:
                if s not in self._pending:
                    self._pending.add(s)
                    self._queue.put(s)

    def stop(self) -> None:
        """End the thread once it has finished the download in hand."""
        self._queue.put(-1)

    def _run(self) -> None:
        while True:
            shard = self._queue.get()
            if shard < 0:
                return
            try:
                self._fetch_one(shard)  # a no-op when the node already has it
            except (OSError, InputError, CorruptShardError):
                pass  # the reader meets the same error itself and reports it with context
            finally:
                with self._lock:
                    self._pending.discard(shard)


class ShardPool:
    """The open shards of one index for one loader worker or thread (an LRU by count and by bytes
    held in memory). It is a cache, never state: each worker/thread builds its own lazily.
    ``keep`` bounds the open shards (for the disk cache: the window's working set, so that one
    process never pins more than its share of the cache).
    """

    def __init__(self, index: SplitIndex, opts: ReadOptions, keep: int | None = None) -> None:
        self.index = index
        self.opts = opts
        self.keep = min(opts.open_shards, keep) if keep else opts.open_shards
        self.memory_limit = opts.budget(index) if opts.cache == "memory" else 0
        self.remote = any(is_remote(index.shard_path(e)) for e in index.shards)
        self.disk = opts.disk_cache() if self.remote and opts.cache == "disk" else None
        self._open: OrderedDict[int, OpenShard] = OrderedDict()
        self._bad: dict[int, CorruptShardError] = {}
        self._ahead: ReadAhead | None = None

    def label(self, shard: int) -> str:
        return self.index.shard_path(self.index.shards[shard])

    def read(self, shard: int, i: int) -> dict[str, Any]:
        return self._get(shard).read(i)

    def read_member(self, shard: int, i: int, ext: str) -> bytes | None:
        return self._get(shard).read_member(i, ext)

    def table(self, shard: int) -> list[SampleSpan]:
        """The member table (offsets) of one shard."""
        return self._get(shard).samples

    def is_bad(self, shard: int) -> bool:
        """True once the shard failed to open in this process (truncated, wrong size, bad tar)."""
        return shard in self._bad

    def release_except(self, needed: set[int]) -> None:
        """Close open shards the next batches do not need (unpins them in the disk cache)."""
        for shard in [s for s in self._open if s not in needed]:
            self._open.pop(shard).close()

    def prefetch(self, shards: Iterable[int]) -> None:
        """Download these shards in the background, in this order (disk cache only)."""
        if self.disk is None or self.opts.readahead == 0:
            return
        todo = [s for s in shards if s not in self._open and s not in self._bad]
        if todo:
            if self._ahead is None:
                self._ahead = ReadAhead(self._fetch_to_disk)
            self._ahead.want(todo[: self.opts.readahead])

    def _fetch_to_disk(self, shard: int) -> None:
        assert self.disk is not None
        entry = self.index.shards[shard]
        url = self.index.shard_path(entry)
        self.disk.fetch(url, entry.sha256, entry.filesize, lambda: fetch(url, entry, self.opts))

    def _get(self, shard: int) -> OpenShard:
        if shard in self._bad:
            raise CorruptShardError(str(self._bad[shard]))
        found = self._open.get(shard)
        if found is not None:
            self._open.move_to_end(shard)
            return found
        self._evict(len(self._open) + 1 - self.keep)  # unpin before downloading more
        try:
            opened = self._open_shard(self.index.shards[shard])
        except CorruptShardError as err:
            self._bad[shard] = err
            raise
        self._open[shard] = opened
        self._evict(0)
        return opened

    def _open_shard(self, entry: ShardEntry) -> OpenShard:
        path = self.index.shard_path(entry)
        if not is_remote(path):
            return _open_local(local_path(path), entry)
        if self.disk is not None:
            cached = self.disk.open(path, entry.sha256, entry.filesize, lambda: fetch(path, entry, self.opts))
            fd = cached.fd
            return OpenShard(path, lambda off, n: os.pread(fd, n, off), cached.size, entry, 0, cached.close)
        return _open_bytes(path, fetch(path, entry, self.opts), entry)

    def _evict(self, extra: int) -> None:
        held = sum(s.held_bytes for s in self._open.values())
        while self._open and (extra > 0 or len(self._open) > self.keep or (len(self._open) > 1 and held > self.memory_limit > 0)):
            _, old = self._open.popitem(last=False)
            held -= old.held_bytes
            extra -= 1
            old.close()

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = None
