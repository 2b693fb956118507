"""A node-shared disk cache of whole remote shards: one download per shard per node, a byte budget.

Every loader process of a machine (ranks, loader workers, threads) shares one folder:

- ``<tag>-<name>`` a complete shard (``tag`` hashes the URL and the index's sha256, so a
  re-built shard never matches a stale copy); its mtime is its last use;
- ``<tag>-<name>.lock`` the shard's download lock: the first process downloads, the others wait
  for it and then open the file it wrote (so a shard is fetched once per node);
- ``<tag>-<name>.part-<pid>-<n>`` a download in progress, created at its full expected size
  while the cache-wide lock is held, so that concurrent downloads reserve their room before any
  byte arrives (two workers racing can no longer overshoot the budget together);
- ``cache.lock`` the cache-wide lock around the budget accounting and eviction.

A process reading a shard holds a shared ``flock`` on its open file (a pin); eviction takes
least-recently-used files that it can lock exclusively, so a shard in use is never deleted. When
every candidate is pinned, the downloader waits a moment for readers to move on, then goes over
the budget with a warning rather than deadlocking (the failure of mosaicml/streaming#417); the
process that went over evicts again as its readers unpin, so the overshoot does not last.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX: downloads may repeat, never corrupt
    fcntl = None  # type: ignore[assignment]

GLOBAL_LOCK = "cache.lock"
_PART = ".part-"
_counter = itertools.count()


def default_cache_dir() -> str:
    """``$DATAKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/datakit/shards``, else ``~/.cache/datakit/shards``."""
    explicit = os.environ.get("DATAKIT_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "datakit", "shards")


@contextmanager
def _flock(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or shared) lock on ``path`` (created if needed)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _is_data(name: str) -> bool:
    return not (name.endswith(".lock") or _PART in name or name.startswith("."))


@dataclass(frozen=True)
class CachedFile:
    """An open, pinned shard file: read it with ``os.pread(fd, ...)``; ``close()`` unpins it."""

    path: Path
    fd: int
    size: int
    cache: "DiskCache"

    def close(self) -> None:
        try:
            os.utime(self.path)  # last use: eviction is least recently used first
        except OSError:
            pass
        os.close(self.fd)
        if self.cache.over:
            self.cache.shrink()


class DiskCache:
    """Whole shards in ``directory``; files beyond ``limit`` bytes are evicted least recently used first."""

    def __init__(self, directory: str | Path, limit: int | None, pin_wait_s: float = 1.0) -> None:
        self.directory = Path(directory)
        self.limit = limit
        self.pin_wait_s = pin_wait_s
        self.over = False  # this process went over the limit: evict again when a pin is released
        self._warned = False
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create the shard cache {self.directory}: {err.strerror or err}") from None

    def path(self, url: str, sha256: str = "") -> Path:
        tag = hashlib.sha1(f"{url}\0{sha256}".encode()).hexdigest()[:16]
        return self.directory / f"{tag}-{url.rsplit('/', 1)[-1]}"

    def usage(self) -> int:
        """Bytes of complete shards and reserved downloads in the folder now."""
        return sum(size for _, size, _ in self._files(parts=True))

    # -- reading ------------------------------------------------------------------------
    def open(self, url: str, sha256: str, size: int, download: Callable[[], bytes]) -> CachedFile:
        """The shard's local copy, opened and pinned; downloaded first if this node lacks it."""
        path = self.path(url, sha256)
        for _ in range(5):
            found = self._open_pinned(path, size)
            if found is not None:
                return found
            self.fetch(url, sha256, size, download)
        raise InputError(f"{url}: the cache at {self.directory} keeps losing this shard; is cache_bytes far too small?")

    def fetch(self, url: str, sha256: str, size: int, download: Callable[[], bytes]) -> bool:
        """Make sure the shard is in the cache; True when this call downloaded it."""
        path = self.path(url, sha256)
        if self._complete(path, size):
            return False
        with _flock(path.with_name(path.name + ".lock")):
            if self._complete(path, size):  # another process fetched it while we waited
                return False
            part = self._reserve(path, size)
            try:
                data = download()
                with open(part, "r+b") as fh:
                    fh.write(data)
                    fh.truncate(len(data))
                os.replace(part, path)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        return True

    @staticmethod
    def _complete(path: Path, size: int) -> bool:
        try:
            return size <= 0 or path.stat().st_size == size
        except FileNotFoundError:
            return False

    def shrink(self) -> None:
        """Evict down to the limit now (after readers unpinned what blocked an earlier eviction)."""
        with _flock(self.directory / GLOBAL_LOCK):
            self.over = self._evict(0) > 0

    def _open_pinned(self, path: Path, size: int) -> CachedFile | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.fstat(fd)
        if st.st_nlink == 0 or (size > 0 and st.st_size != size):  # evicted or replaced while we opened it
            os.close(fd)
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return CachedFile(path, fd, st.st_size, self)

    # -- the budget -----------------------------------------------------------------------
    def _reserve(self, path: Path, size: int) -> Path:
        """Under the cache-wide lock: evict until ``size`` more bytes fit, then create the download's
        part file at that size, so that every other process counts it from now on."""
        part = path.with_name(f"{path.name}{_PART}{os.getpid()}-{threading.get_ident()}-{next(_counter)}")
        deadline = time.monotonic() + self.pin_wait_s
        while True:
            with _flock(self.directory / GLOBAL_LOCK):
                over = self._evict(max(size, 0))
                if over <= 0 or time.monotonic() >= deadline:
                    with open(part, "wb") as fh:
                        fh.truncate(max(size, 0))
                    break
            time.sleep(0.05)  # every candidate is pinned by a reader: give them a moment to move on
        self.over = over > 0
        if over > 0 and not self._warned:
            self._warned = True
            warnings.warn(f"shard cache {self.directory} is {over} bytes over its limit of {self.limit}: every cached "
                          f"shard is in use; raise cache_bytes or lower the shuffle window", RuntimeWarning, stacklevel=3)
        return part

    def _files(self, parts: bool) -> list[tuple[float, int, Path]]:
        out = []
        for entry in os.scandir(self.directory):
            if not (_is_data(entry.name) or (parts and _PART in entry.name)) or entry.name == GLOBAL_LOCK:
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            out.append((st.st_mtime, st.st_size, Path(entry.path)))
        return out

    def _evict(self, incoming: int) -> int:
        """Delete unpinned shards, oldest use first, until ``incoming`` fits; the bytes still over."""
        if self.limit is None:
            return 0
        files = self._files(parts=True)
        total = sum(size for _, size, _ in files) + incoming
        for _, size, p in sorted(f for f in files if _is_data(f[2].name)):
            if total <= self.limit:
                break
            if self._try_delete(p):
                total -= size
        return total - self.limit

    @staticmethod
    def _try_delete(path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False  # pinned by a reader
            path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)
