"""Every file an export writes stays under ``--out``, and nothing already there is replaced silently.

Shard keys come from files anyone can craft, so a key becomes a path only if it is a plain relative
path ('/'-separated parts, none empty, ``.`` or ``..``; no backslash, drive letter or control
character), and the resolved folder of every target (symlinks followed) must lie inside the
resolved output folder. A target that exists with other bytes is refused unless ``overwrite``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write_bytes

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_PART_BYTES = 240


def key_parts(key: str, where: str) -> list[str]:
    """The '/'-separated parts of a safe shard key; anything else is a one-line error."""
    parts = key.split("/") if isinstance(key, str) else [""]
    bad = (not key or key.startswith("/") or _BAD_CHARS.search(key) or _DRIVE.match(key)
           or any(p in ("", ".", "..") or len(p.encode("utf-8", "replace")) > MAX_PART_BYTES for p in parts))
    if bad:
        raise InputError(f"export: refusing sample key {key!r} in {where}: a key must be a relative path "
                         "without '..', '.', empty parts, backslashes, drive letters or control characters")
    return parts


def safe_component(name: str, what: str) -> str:
    """A single folder name taken from an index (a dataset or split name)."""
    key_parts(name, what)
    if "/" in name:
        raise InputError(f"export: {what} name {name!r} must not contain '/'")
    return name


@dataclass
class Writer:
    """Writes files under ``root``: atomic, idempotent (equal bytes are kept), never outside ``root``."""

    root: Path
    overwrite: bool = False
    written: int = 0
    kept: int = 0
    replaced: int = 0
    _checked: set[Path] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    def target(self, rel: str) -> Path:
        """The absolute path of ``rel`` after checking that its folder resolves inside ``root``."""
        path = self.root / rel
        parent = path.parent
        if parent not in self._checked:
            real = parent.resolve()
            if real != self.root and self.root not in real.parents:
                raise InputError(f"export: {rel!r} would be written outside {self.root} (resolves to {real})")
            parent.mkdir(parents=True, exist_ok=True)
            if parent.resolve() != real:  # a link appeared while the folders were made
                raise InputError(f"export: {parent} changed while it was created; refusing to write there")
            self._checked.add(parent)
        return path

    def put(self, rel: str, data: bytes) -> str:
        """Write ``data`` at ``rel``: 'written', 'kept' (already these bytes) or 'replaced' (``overwrite``)."""
        path = self.target(rel)
        if os.path.lexists(path):
            if path.is_file() and not path.is_symlink() and path.stat().st_size == len(data) and path.read_bytes() == data:
                self.kept += 1
                return "kept"
            if not self.overwrite or path.is_dir():
                raise InputError(f"export: {path} already exists with other content; it was not written by this export "
                                 "(pass --overwrite to replace the files this export writes)")
            atomic_write_bytes(path, data)
            self.replaced += 1
            return "replaced"
        atomic_write_bytes(path, data)
        self.written += 1
        return "written"
