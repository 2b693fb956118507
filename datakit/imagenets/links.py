"""Placing one file of a folder layout: symlink (absolute target), hardlink or copy, atomically
and idempotently (an equal existing file is left alone, anything else is replaced by a rename).

Each placer returns True when it created or replaced the file and False when it was already right.
A destination is never written through: an old symlink is replaced, not followed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import zlib
from typing import Callable

from ..errors import InputError

TMP_SUFFIX = ".dktmp"
Placer = Callable[[str, str], bool]


def _tmp(dst: str) -> str:
    """The temporary name beside ``dst``, with any leftover from a killed run removed."""
    tmp = dst + TMP_SUFFIX
    if os.path.lexists(tmp):
        os.unlink(tmp)  # left by a killed run
    return tmp


def place_symlink(src: str, dst: str) -> bool:
    """A symlink with an absolute target, whatever the form of ``src``."""
    target = os.path.abspath(src)
    if os.path.islink(dst) and os.readlink(dst) == target:
        return False
    tmp = _tmp(dst)
    os.symlink(target, tmp)
    os.replace(tmp, dst)
    return True


def place_hardlink(src: str, dst: str) -> bool:
    """A hardlink; an error that says what to do when the file systems differ."""
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


def _same_copy(src_stat: os.stat_result, dst: str) -> bool:
    """A regular file with the source's size and modification second (what a copy here leaves)."""
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == src_stat.st_size and int(st.st_mtime) == int(src_stat.st_mtime)


def place_copy(src: str, dst: str) -> bool:
    """Copy bytes and the modification time (the idempotency check); no xattrs or modes."""
    src_stat = os.stat(src)
    if _same_copy(src_stat, dst):
        return False
    tmp = _tmp(dst)
    shutil.copyfile(src, tmp)
    os.utime(tmp, ns=(src_stat.st_atime_ns, src_stat.st_mtime_ns))
    os.replace(tmp, dst)
    return True


PLACERS: dict[str, Placer] = {"symlink": place_symlink, "hardlink": place_hardlink, "copy": place_copy}


def same_bytes(dst: str, size: int, crc: int) -> bool:
    """A regular file (not a link) of this size and CRC-32 is already at ``dst``."""
    try:
        st = os.lstat(dst)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return False
    with open(dst, "rb") as f:
        return zlib.crc32(f.read()) == crc


def place_bytes(data: bytes, dst: str) -> bool:
    """Write bytes (a zip member) unless an identical file is there."""
    if same_bytes(dst, len(data), zlib.crc32(data)):
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
