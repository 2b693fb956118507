"""Where a build's files go: a local folder, or an fsspec URL (``s3://bucket/prefix``).

Shard writers always write to a local folder. For a remote output each finished shard is then
uploaded whole (object stores only show an object once its upload completes; other file systems
get a temporary name and a rename), its stats file after it, and the index last.
"""

from __future__ import annotations

import json
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .remote import with_retries
from .shards.index import index_bytes, write_index
from .shards.writer import ShardStats, read_stats, stats_path

ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


@dataclass(frozen=True)
class Output:
    """A build's destination; picklable, so workers (local or on Ray nodes) get their own copy."""

    url: str

    @property
    def remote(self) -> bool:
        return is_url(self.url)

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        try:
            return fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as err:
            raise InputError(f"cannot write to {self.url}: {err} (for s3:// install datakit[remote])") from None

    def local_dir(self, split: str) -> Path:
        """The folder a shard writer writes into."""
        if not self.remote:
            return Path(self.url) / split
        tag = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"datakit-stage-{tag}" / split
        path.mkdir(parents=True, exist_ok=True)
        return path

    def split_url(self, split: str) -> str:
        return f"{self.url.rstrip('/')}/{split}"

    def commit(self, split: str, stats: ShardStats) -> None:
        """Publish a finished shard: the tar first, its stats (the done marker) after it."""
        if not self.remote:
            return
        fs, root = self._fs()
        local = self.local_dir(split)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        if stats.file:
            target = f"{root.rstrip('/')}/{split}/{stats.file}"
            if protocol in ATOMIC_PUT:
                with_retries(lambda: fs.put_file(str(local / stats.file), target), target)
            else:
                with_retries(lambda: fs.put_file(str(local / stats.file), target + ".tmp"), target)
                fs.mv(target + ".tmp", target)
        marker = stats_path(local, stats.name)
        with_retries(lambda: fs.put_file(str(marker), f"{root.rstrip('/')}/{split}/{marker.name}"), marker.name)
        for p in (local / stats.file if stats.file else None, marker):
            if p is not None:
                p.unlink(missing_ok=True)

    def finished(self, split: str, name: str) -> ShardStats | None:
        """The stats of a finished shard, or None (resume redoes it)."""
        if not self.remote:
            return read_stats(Path(self.url) / split, name)
        fs, root = self._fs()
        base = f"{root.rstrip('/')}/{split}"
        try:
            stats = ShardStats.from_json(json.loads(fs.cat_file(f"{base}/{name}.stats.json")))
            if stats.file is not None and fs.size(f"{base}/{stats.file}") != stats.bytes:
                return None
        except (FileNotFoundError, ValueError, TypeError, KeyError):
            return None
        return stats

    def prepare(self, splits: list[str], resume: bool, overwrite: bool) -> None:
        """Refuse to mix with an existing output unless resuming or overwriting."""
        if not self.remote:
            out = Path(self.url)
            existing = [s for s in splits if (out / s).exists() and any((out / s).iterdir())]
            self._check(existing, resume, overwrite)
            for s in splits:
                if overwrite and (out / s).exists():
                    shutil.rmtree(out / s)
                (out / s).mkdir(parents=True, exist_ok=True)
                for stale in (out / s).glob("*.tmp"):
                    stale.unlink()  # torn writes of a killed run
            return
        fs, root = self._fs()
        existing = [s for s in splits if fs.exists(f"{root.rstrip('/')}/{s}") and fs.ls(f"{root.rstrip('/')}/{s}")]
        self._check(existing, resume, overwrite)
        for s in splits:
            if overwrite and s in existing:
                fs.rm(f"{root.rstrip('/')}/{s}", recursive=True)
            local = self.local_dir(s)
            for stale in local.glob("*"):
                stale.unlink()

    def _check(self, existing: list[str], resume: bool, overwrite: bool) -> None:
        if existing and not (resume or overwrite):
            raise InputError(f"{self.url} already holds {', '.join(existing)}; pass --resume to continue or --overwrite to rebuild")

    def write_index(self, split: str, obj: dict[str, Any]) -> str:
        """Write the split's index.json; always the last file of a split."""
        if not self.remote:
            return str(write_index(Path(self.url) / split, obj))
        fs, root = self._fs()
        target = f"{root.rstrip('/')}/{split}/index.json"
        data = index_bytes(obj)
        with_retries(lambda: fs.pipe_file(target, data), target)
        return f"{self.split_url(split)}/index.json"


def cleanup_staging(output: Output) -> None:
    if output.remote:
        tag = hashlib.sha256(output.url.encode()).hexdigest()[:12]
        shutil.rmtree(Path(tempfile.gettempdir()) / f"datakit-stage-{tag}", ignore_errors=True)


__all__ = ["Output", "cleanup_staging", "is_url"]
