"""Byte-level access to local paths and fsspec URLs (s3://, http(s)://, gs://...), with retries."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from .errors import InputError

T = TypeVar("T")
RETRIES = 4
BACKOFF_S = 0.5


def _fs(url: str):
    try:
        import fsspec
    except ImportError as err:  # pragma: no cover - fsspec is a core dependency
        raise InputError(f"reading {url} needs fsspec: pip install fsspec") from err
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise InputError(f"cannot open {url}: {err} (for s3:// install datakit[remote])") from None


def with_retries(fn: Callable[[], T], what: str, retries: int = RETRIES) -> T:
    """Call ``fn``, retrying I/O errors with exponential back-off; the last error is raised as InputError."""
    delay = BACKOFF_S
    for attempt in range(retries + 1):
        try:
            return fn()
        except FileNotFoundError:
            raise InputError(f"not found: {what}") from None
        except (OSError, TimeoutError) as err:
            if attempt == retries:
                raise InputError(f"failed to read {what} after {retries + 1} tries: {err}") from None
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def read_json_file(path: str | Path, what: str = "file") -> Any:
    """A local JSON file's content; a missing file or invalid JSON is a one-line InputError."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def read_bytes(url: str) -> bytes:
    fs, path = _fs(url)
    return with_retries(lambda: fs.cat_file(path), url)
