"""Finding ImageNet-S inputs: ImageNet train/val images (val flat or in class folders) and the
official annotation masks (zip or extracted folder), plus decoding of the RGB-coded masks.

Zip members are located on the driver (offset, sizes, CRC) so a worker reads one mask with a
seek and a decompress, without re-reading the archive's directory or keeping files open.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image

from ..errors import InputError, SampleError
from ..sources.base import InputFile
from ..sources.common import IMAGE_EXTS, input_file
from .lists import IGNORE_ID

SEG_DIRS = ("train-semi-segmentation", "validation-segmentation")


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An input image: absolute path, path relative to the ImageNet root, size in bytes and mtime."""

    path: str
    rel: str
    size: int = 0
    mtime_ns: int = 0

    def stamp(self) -> InputFile:
        return InputFile(self.path, self.size, self.mtime_ns)


def is_image(name: str) -> bool:
    """An image file name (by extension), hidden files excluded."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS


def list_class_folder(imagenet: str, wnid: str, sizes: bool = True) -> list[ImageFile] | None:
    """Images of ``train/<wnid>/`` sorted by name; None when the folder does not exist."""
    folder = os.path.join(imagenet, "train", wnid)
    try:
        entries = [e for e in os.scandir(folder) if is_image(e.name) and e.is_file()]
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InputError(f"cannot list {folder}: {err.strerror or err}") from None
    entries.sort(key=lambda e: e.name)
    if not sizes:
        return [ImageFile(e.path, f"train/{wnid}/{e.name}") for e in entries]
    stats = [e.stat() for e in entries]
    return [ImageFile(e.path, f"train/{wnid}/{e.name}", st.st_size, st.st_mtime_ns) for e, st in zip(entries, stats)]


def index_val(imagenet: str) -> dict[str, ImageFile]:
    """Every image of ``val/`` by basename, whether the folder is flat or split into class folders."""
    root = os.path.join(imagenet, "val")
    if not os.path.isdir(root):
        raise InputError(f"no ImageNet val folder at {root} (validation and test come from it)")
    found: dict[str, ImageFile] = {}

    def add(entry: os.DirEntry[str], rel: str) -> None:
        """Record one val image, refusing a basename seen twice."""
        if entry.name in found:
            raise InputError(f"{entry.name} is in ImageNet val twice: {found[entry.name].rel} and {rel}")
        st = entry.stat()
        found[entry.name] = ImageFile(entry.path, rel, st.st_size, st.st_mtime_ns)

    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir():
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if is_image(sub.name) and sub.is_file():
                    add(sub, f"val/{entry.name}/{sub.name}")
        elif is_image(entry.name) and entry.is_file():
            add(entry, f"val/{entry.name}")
    return found


def stat_file(imagenet: str, rel: str) -> ImageFile | None:
    """The image at ``rel`` under the ImageNet root, or None if it is not a file."""
    path = os.path.join(imagenet, rel)
    try:
        st = os.stat(path)
    except OSError:
        return None
    return ImageFile(path, rel, st.st_size, st.st_mtime_ns) if os.path.isfile(path) else None


@dataclass(frozen=True)
class MaskRef:
    """Where one mask PNG is: a plain file (``offset < 0``) or a member of a zip archive."""

    path: str
    member: str = ""
    offset: int = -1
    csize: int = 0
    usize: int = 0
    method: int = 0
    crc: int = 0

    @property
    def label(self) -> str:
        """A readable location for messages."""
        return f"{self.path}:{self.member}" if self.offset >= 0 else self.path

    def stamp(self) -> InputFile:
        """The mask as an input file: a zip member is identified by its size and CRC (its content)."""
        if self.offset >= 0:
            return InputFile(self.label, self.usize, 0, f"crc32:{self.crc:08x}")
        return input_file(self.path)


def read_mask_bytes(ref: MaskRef) -> bytes:
    """The mask's PNG bytes; a zip member is checked against its size and CRC."""
    try:
        if ref.offset < 0:
            with open(ref.path, "rb") as f:
                return f.read()
        with open(ref.path, "rb") as f:
            f.seek(ref.offset)
            head = f.read(30)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                raise SampleError("corrupt_annotation", f"{ref.label}: no local zip header")
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            f.seek(ref.offset + 30 + name_len + extra_len)
            data = f.read(ref.csize)
    except OSError as err:
        raise SampleError("unreadable_annotation", f"{ref.label}: {err.strerror or err}") from None
    if ref.method == zipfile.ZIP_DEFLATED:
        try:
            data = zlib.decompress(data, -15)
        except zlib.error as err:
            raise SampleError("corrupt_annotation", f"{ref.label}: {err}") from None
    elif ref.method != zipfile.ZIP_STORED:
        raise SampleError("corrupt_annotation", f"{ref.label}: unsupported zip compression {ref.method}")
    if len(data) != ref.usize or zlib.crc32(data) != ref.crc:
        raise SampleError("corrupt_annotation", f"{ref.label}: size or CRC mismatch")
    return data


def decode_official_mask(data: bytes, subset: int, origin: str) -> np.ndarray:
    """Class ids of an official mask: R + 256*G (in int32), checked to be 0..N or 1000, as uint16.

    Single-channel PNGs are taken as ids directly (datakit's own 16-bit masks)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode == "P":
                img = img.convert("RGB")
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise SampleError("unreadable_annotation", f"{origin}: {err}") from None
    if arr.ndim == 3 and arr.shape[2] >= 2:
        ids = arr[:, :, 0].astype(np.int32) + 256 * arr[:, :, 1].astype(np.int32)
    elif arr.ndim == 2:
        ids = arr.astype(np.int32)
    else:
        raise SampleError("bad_annotation", f"{origin}: unexpected mask shape {arr.shape}")
    bad = np.unique(ids[(ids > subset) & (ids != IGNORE_ID)])
    if bad.size:
        raise SampleError("bad_annotation", f"{origin}: ids {bad[:5].tolist()} are neither 0..{subset} nor {IGNORE_ID} "
                                            f"(annotations of another subset?)")
    return ids.astype(np.uint16)


_SUBSET_DIR = re.compile(r"^ImageNetS(\d+)$")


@dataclass(frozen=True)
class Annotations:
    """The masks of one subset: ``lookup('validation-segmentation/<wnid>/<name>.png')``."""

    subset: int
    where: str
    folder: str | None = None
    members: Mapping[str, MaskRef] = field(default_factory=dict)

    def lookup(self, rel: str) -> MaskRef | None:
        """The mask at ``rel`` (``<seg dir>/<wnid>/<name>.png``), or None."""
        if self.folder is not None:
            path = os.path.join(self.folder, rel)
            return MaskRef(path) if os.path.isfile(path) else None
        return self.members.get(rel)


def _zip_members(path: str, subset: int) -> dict[str, MaskRef]:
    """Locate every mask of the subset in an annotation zip (refuses another subset's zip)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"annotations {path}: not a readable zip ({err})") from None
    ours: list[tuple[str, MaskRef]] = []
    others: set[str] = set()
    for info in infos:
        parts = info.filename.split("/")
        if info.is_dir() or len(parts) < 3 or parts[-3] not in SEG_DIRS:
            continue
        top = parts[-4] if len(parts) >= 4 else ""
        m = _SUBSET_DIR.match(top)
        if m and int(m.group(1)) != subset:
            others.add(top)
            continue
        if info.flag_bits & 0x1:
            raise InputError(f"annotations {path}: {info.filename} is encrypted")
        ref = MaskRef(path, info.filename, info.header_offset, info.compress_size, info.file_size,
                      info.compress_type, info.CRC)
        ours.append(("/".join(parts[-3:]), ref))
    if not ours:
        hint = f"it holds {', '.join(sorted(others))}" if others else "it has no *-segmentation/ masks"
        raise InputError(f"annotations {path}: no ImageNetS{subset} masks ({hint})")
    return dict(sorted(ours))


def open_annotations(path: str, subset: int) -> Annotations:
    """Resolve ``--annotations`` for one subset: a zip, an ``ImageNetS{N}`` folder, or a folder
    holding ``ImageNetS{N}/`` or an ``ImageNetS{N}*.zip``."""
    p = Path(path)
    if p.is_file():
        return Annotations(subset, path, members=_zip_members(path, subset))
    if not p.is_dir():
        raise InputError(f"annotations not found: {path}")
    named = _SUBSET_DIR.match(p.name)
    if any((p / d).is_dir() for d in SEG_DIRS) and (named is None or int(named.group(1)) == subset):
        return Annotations(subset, path, folder=str(p))
    inner = p / f"ImageNetS{subset}"
    if any((inner / d).is_dir() for d in SEG_DIRS):
        return Annotations(subset, str(inner), folder=str(inner))
    zips = sorted(q for q in p.glob(f"ImageNetS{subset}*.zip") if _SUBSET_DIR.match(q.stem.split("-")[0]))
    if len(zips) == 1:
        return Annotations(subset, str(zips[0]), members=_zip_members(str(zips[0]), subset))
    if len(zips) > 1:
        raise InputError(f"annotations {path}: several ImageNetS{subset} zips: {[z.name for z in zips]}")
    raise InputError(f"annotations {path}: no ImageNetS{subset} masks found (expected the official zip, "
                     f"an extracted ImageNetS{subset}/ folder, or a folder holding either)")
