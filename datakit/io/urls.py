"""Paths and URLs: the one test for "is this remote", and the fsspec file system behind a URL.

``file://`` URLs are local paths. Anything else with a scheme (``s3://``, ``http(s)://``,
``gs://``, ``memory://``) is served by fsspec, imported only when a URL is actually used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InputError

FILE_SCHEME = "file://"


def is_url(path: str | Path) -> bool:
    """True for anything with a scheme, ``file://`` included."""
    return "://" in str(path)


def is_remote(path: str | Path) -> bool:
    """True when bytes must go through fsspec (a URL that is not ``file://``)."""
    text = str(path)
    return "://" in text and not text.startswith(FILE_SCHEME)


def local_path(path: str | Path) -> str:
    """The local path of a plain path or a ``file://`` URL."""
    text = str(path)
    return text[len(FILE_SCHEME):] if text.startswith(FILE_SCHEME) else text


def join(base: str | Path, name: str) -> str:
    """``base/name`` for a folder or URL prefix; an absolute path or URL ``name`` is returned as is."""
    if is_url(name) or name.startswith("/"):
        return name
    return f"{str(base).rstrip('/')}/{name}"


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec file system and in-store path of ``url``; a missing backend is one InputError line."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError) as err:
        raise InputError(f"cannot open {url}: {err} (s3:// needs 'datakit[remote]', http(s):// needs aiohttp)") from None


def protocol_of(fs: Any) -> str:
    proto = fs.protocol
    return proto if isinstance(proto, str) else proto[0]


def is_within(path: str | Path, root: str | Path) -> bool:
    """``path`` is ``root`` or lies below it, symlinks resolved (local paths only)."""
    target, base = os.path.realpath(path), os.path.realpath(root)
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def check_output(out: str | Path, inputs: Sequence[str] = (), file: bool = False) -> None:
    """The one check of a local ``--out``: a folder (``file=False``) must not be an existing file, and
    neither it nor a file's folder may lie inside one of ``inputs`` (split folders or dataset roots:
    they hold what a build wrote or the user's own data)."""
    if not file and os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file; give a folder")
    where = Path(out).parent if file else out
    for root in inputs:
        if root and not is_remote(root) and is_within(where, local_path(root)):
            raise InputError(f"--out {out} is inside the input {root}: choose a place outside it")
