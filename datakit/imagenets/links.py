"""Placing one file of a folder layout: symlink (absolute target), hardlink or copy, atomically
and idempotently (an equal existing file is left alone, anything else is replaced by a rename).

Each placer returns True when it created or replaced the file and False when it was already right.
A destination is never written through: an old symlink is replaced, not followed.
"""

from __future__ import annotations

import errno
import os
import shutil
import zlib
from typing import Callable

from ..errors import InputError

TMP_SUFFIX = ".dktmp"
Placer = Callable[[str, str], bool]


def _tmp(dst: str) -> str:
    tmp = dst + TMP_SUFFIX
    if os.path.lexists(tmp):
        os.unlink(tmp)  # left by a killed run
    return tmp


def place_symlink(src: str, dst: str) -> bool:
    target = os.path.abspath(src)
    if os.path.islink(dst) and os.readlink(dst) == target:
        return False
    tmp = _tmp(dst)
    os.symlink(target, tmp)
    os.replace(tmp, dst)
    return True


def place_hardlink(src: str, dst: str) -> bool:
    if os.path.lexists(dst) and not os.path.islink(dst) and os.path.samefile(src, dst):
        return False
    tmp = _tmp(dst)
    try:
        os.link(src, tmp)
    except OSError as err:
        if err.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise InputError(f"cannot hardlink {src} into {os.path.dirname(dst)} ({err.strerror}); "
                             "use --link symlink or --link copy") from None
        raise
    os.replace(tmp, dst)
    return True


def same_copy(src: str, dst: str) -> bool:
    """A regular file with the source's size and modification second (what copy2 leaves)."""
    if os.path.islink(dst) or not os.path.isfile(dst):
        return False
    a, b = os.stat(src), os.stat(dst)
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def place_copy(src: str, dst: str) -> bool:
    if same_copy(src, dst):
        return False
    tmp = _tmp(dst)
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


PLACERS: dict[str, Placer] = {"symlink": place_symlink, "hardlink": place_hardlink, "copy": place_copy}


def place_bytes(data: bytes, dst: str) -> bool:
    """Write bytes (a zip member) unless an identical file is there; by size and CRC-32."""
    if not os.path.islink(dst) and os.path.isfile(dst) and os.path.getsize(dst) == len(data):
        with open(dst, "rb") as f:
            if zlib.crc32(f.read()) == zlib.crc32(data):
                return False
    tmp = _tmp(dst)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dst)
    return True


def place_dir_symlink(target: str, dst: str) -> bool | None:
    """A directory symlink ``dst -> target``; None when ``dst`` is a real folder (then the caller
    links its files one by one, so a re-run after a copy-mode run never deletes anything)."""
    target = os.path.abspath(target)
    if os.path.islink(dst):
        if os.readlink(dst) == target:
            return False
    elif os.path.isdir(dst):
        return None
    tmp = _tmp(dst)
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, dst)
    return True


def real_dir(path: str) -> None:
    """Make ``path`` a real folder; a directory symlink left by a symlink-mode run is removed
    (only the link), so files are never written into the ImageNet source through it."""
    if os.path.islink(path):
        os.unlink(path)
    os.makedirs(path, exist_ok=True)
