"""Where a job's files go: a local folder or an object store, behind one protocol.

Writers always produce files in a local *staging* folder; ``publish`` makes a staged file visible
at its final name (a no-op locally, where staging is the final folder and the writer already
renamed atomically; an upload elsewhere: object stores show an object only once its upload
completes, other file systems get a temporary name and a rename). Small files are written whole
with ``write_bytes``. Names are plain file names inside a folder of the output; a name with a
path separator or ``..`` is refused, so nothing is written outside the output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from ..errors import InputError
from .atomic import atomic_write_bytes, fsync_dir
from .read import read_local
from .retry import RetryPolicy, with_retries
from .urls import filesystem, is_remote, local_path, protocol_of

ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}


def check_name(name: str) -> str:
    """A plain file name, never a path: refuses separators, ``..`` and empty names."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f"refusing to write {name!r}: not a plain file name")
    return name


class Output(Protocol):
    """A destination for a job's files, organised in folders (one per split, say)."""

    @property
    def url(self) -> str: ...

    def staging(self, folder: str) -> Path: ...

    def publish(self, folder: str, name: str, fsync: bool = False) -> None: ...

    def write_bytes(self, folder: str, name: str, data: bytes, fsync: bool = False) -> str: ...

    def read_bytes(self, folder: str, name: str) -> bytes | None: ...

    def size(self, folder: str, name: str) -> int | None: ...

    def names(self, folder: str) -> list[str]: ...

    def remove(self, folder: str, name: str) -> None: ...

    def rename(self, folder: str, old: str, new: str) -> None: ...

    def locate(self, folder: str, name: str = "") -> str: ...

    def cleanup(self) -> None: ...


@dataclass(frozen=True)
class LocalOutput:
    """A folder on a local or shared file system; staging is the folder itself."""

    url: str

    @property
    def root(self) -> Path:
        return Path(local_path(self.url))

    def staging(self, folder: str) -> Path:
        path = self.root / folder
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InputError(f"cannot create the output folder {path}: a file is in the way") from None
        except OSError as err:
            raise InputError(f"cannot create the output folder {path}: {err.strerror or err}") from None
        return path

    def publish(self, folder: str, name: str, fsync: bool = False) -> None:
        if fsync:
            fsync_dir(self.root / folder)

    def write_bytes(self, folder: str, name: str, data: bytes, fsync: bool = False) -> str:
        path = self.staging(folder) / check_name(name)
        return str(atomic_write_bytes(path, data, fsync))

    def read_bytes(self, folder: str, name: str) -> bytes | None:
        try:
            return read_local(self.root / folder / check_name(name))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def size(self, folder: str, name: str) -> int | None:
        try:
            return (self.root / folder / check_name(name)).stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def names(self, folder: str) -> list[str]:
        try:
            return sorted(os.listdir(self.root / folder))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove(self, folder: str, name: str) -> None:
        path = self.root / folder / check_name(name)
        if path.is_dir() and not path.is_symlink():
            raise InputError(f"refusing to delete the folder {path}")
        path.unlink(missing_ok=True)

    def rename(self, folder: str, old: str, new: str) -> None:
        os.replace(self.root / folder / check_name(old), self.root / folder / check_name(new))

    def locate(self, folder: str, name: str = "") -> str:
        return str(self.root / folder / name) if name else str(self.root / folder)

    def cleanup(self) -> None:
        return None


@dataclass(frozen=True)
class RemoteOutput:
    """An fsspec URL (``s3://bucket/prefix``): files are staged locally and uploaded whole."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    policy: RetryPolicy = RetryPolicy()

    def _fs(self) -> tuple[Any, str]:
        fs, root = filesystem(self.url, self.storage_options)
        return fs, root.rstrip("/")

    def _target(self, folder: str, name: str) -> tuple[Any, str]:
        fs, root = self._fs()
        return fs, f"{root}/{folder}/{check_name(name)}" if folder else f"{root}/{check_name(name)}"

    def staging(self, folder: str) -> Path:
        tag = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"datakit-stage-{tag}" / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, folder: str, name: str, fsync: bool = False) -> None:
        local = self.staging(folder) / check_name(name)
        fs, target = self._target(folder, name)
        if protocol_of(fs) in ATOMIC_PUT:
            with_retries(lambda: fs.put_file(str(local), target), target, self.policy)
        else:
            with_retries(lambda: fs.put_file(str(local), target + ".tmp"), target, self.policy)
            fs.mv(target + ".tmp", target)
        local.unlink(missing_ok=True)

    def write_bytes(self, folder: str, name: str, data: bytes, fsync: bool = False) -> str:
        fs, target = self._target(folder, name)
        if protocol_of(fs) in ATOMIC_PUT:
            with_retries(lambda: fs.pipe_file(target, data), target, self.policy)
        else:
            with_retries(lambda: fs.pipe_file(target + ".tmp", data), target, self.policy)
            fs.mv(target + ".tmp", target)
        return self.locate(folder, name)

    def read_bytes(self, folder: str, name: str) -> bytes | None:
        fs, target = self._target(folder, name)
        try:
            return with_retries(lambda: fs.cat_file(target), target, self.policy)
        except InputError as err:
            if str(err).startswith("not found"):
                return None
            raise

    def size(self, folder: str, name: str) -> int | None:
        fs, target = self._target(folder, name)
        try:
            return int(fs.size(target))
        except FileNotFoundError:
            return None

    def names(self, folder: str) -> list[str]:
        fs, root = self._fs()
        path = f"{root}/{folder}" if folder else root
        try:
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def remove(self, folder: str, name: str) -> None:
        fs, target = self._target(folder, name)
        try:
            fs.rm_file(target)
        except FileNotFoundError:
            pass

    def rename(self, folder: str, old: str, new: str) -> None:
        fs, source = self._target(folder, old)
        _, target = self._target(folder, new)
        fs.mv(source, target)

    def locate(self, folder: str, name: str = "") -> str:
        base = f"{self.url.rstrip('/')}/{folder}" if folder else self.url.rstrip("/")
        return f"{base}/{name}" if name else base

    def cleanup(self) -> None:
        tag = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        shutil.rmtree(Path(tempfile.gettempdir()) / f"datakit-stage-{tag}", ignore_errors=True)


def open_output(url: str | Path, storage_options: Mapping[str, Any] | None = None) -> LocalOutput | RemoteOutput:
    """The output behind a path or URL: local paths and ``file://`` are folders, anything else is fsspec."""
    text = str(url)
    if is_remote(text):
        return RemoteOutput(text, dict(storage_options or {}))
    return LocalOutput(os.path.abspath(local_path(text)))
