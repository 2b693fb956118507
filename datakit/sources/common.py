"""Shared pieces of the dataset converters: listing files, confining paths, label maps, checks, totals.

Converters list files through ``list_stems``/``scan_tree``/``input_file`` (one ``stat`` per file,
kept in the record's ``InputFile``), confine paths taken from annotation or list content with
``under_root``, read label maps through ``read_index_map`` (indices as stored, never colour-converted),
turn bad input into ``SampleError(reason, detail)`` or a listing ``Problem``, and report a shortfall
against the dataset's published sample counts with ``totals_report``. Parameters are validated by
``datakit.sources.params``.
"""

from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, SampleError
from ..io.read import read_local
from ..shards.codecs import image_size
from .base import InputFile, Problem, Record

STAT_THREADS = 16  # stat() releases the GIL: file systems answer many at once (NFS, Lustre, SSD queues)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def first_dir(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first existing folder among ``root/candidate``; InputError naming every place looked."""
    for cand in candidates:
        if (root / cand).is_dir():
            return root / cand
    raise InputError(f"{what} not found under {root} (looked for {', '.join(candidates)})")


def _stamp(entry: os.DirEntry[str]) -> InputFile:
    st = entry.stat()
    return InputFile(entry.path, st.st_size, st.st_mtime_ns)


def input_file(path: str | Path) -> InputFile:
    """A file as it is now: size and mtime, or size -1 when it is missing (load will say why)."""
    text = str(path)
    try:
        st = os.stat(text)
    except OSError:
        return InputFile(text)
    return InputFile(text, st.st_size, st.st_mtime_ns)


def list_stems(folder: Path, suffix: str) -> dict[str, InputFile]:
    """``stem -> InputFile`` for the regular files of one folder ending with ``suffix`` (case-insensitive)."""
    low = suffix.lower()
    try:
        entries = [e for e in os.scandir(folder) if e.name.lower().endswith(low) and not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as err:
        raise InputError(f"cannot list {folder}: {err.strerror or err}") from None
    files = [e for e in entries if e.is_file()]
    with ThreadPoolExecutor(min(STAT_THREADS, max(1, len(files)))) as pool:
        stamps = list(pool.map(_stamp, files))
    return {e.name[: len(e.name) - len(suffix)]: f for e, f in zip(files, stamps)}


def _list_dir(folder: str, exts: frozenset[str]) -> tuple[list[InputFile], list[str]]:
    """(image files stamped, sub-folders) of one folder, each sorted by name; hidden entries skipped."""
    try:
        entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        raise InputError(f"cannot list {folder}: {err.strerror or err}") from None
    files = [_stamp(e) for e in entries if os.path.splitext(e.name)[1].lower() in exts and e.is_file()]
    dirs = [e.path for e in entries if e.is_dir()]
    return files, dirs


def scan_tree(root: str | Path, exts: Sequence[str] = tuple(IMAGE_EXTS), threads: int = STAT_THREADS) -> Iterator[InputFile]:
    """Every image under ``root`` with its stat, streamed in a fixed order (a folder's files by name,
    then its sub-folders by name, depth first). The next ``threads`` folders in that order are listed
    and stat'ed ahead on threads; nothing else is held, so huge trees list in bounded memory."""
    top = str(root)
    if not os.path.isdir(top):
        raise InputError(f"image folder not found: {root}")
    wanted = frozenset(e.lower() for e in exts)
    with ThreadPoolExecutor(threads) as pool:
        stack: list[list[Any]] = [[top, None]]  # [folder, future of its listing or None], next folder last
        while stack:
            for entry in stack[-threads:]:
                if entry[1] is None:
                    entry[1] = pool.submit(_list_dir, entry[0], wanted)
            files, dirs = stack.pop()[1].result()
            yield from files
            stack.extend([d, None] for d in reversed(dirs))


def present_splits(dataset: str, found: dict[str, str | None], hint: str) -> list[str]:
    """The default splits of a converter: those whose inputs exist (``found[split]`` is None), with a warning
    naming the others; none at all is an InputError naming what was looked for and ``--split``."""
    here = [s for s, missing in found.items() if missing is None]
    if not here:
        looked = "; ".join(f"{s}: {m}" for s, m in found.items())
        raise InputError(f"{dataset}: no split found ({looked}); {hint}")
    for split, missing in found.items():
        if missing is not None:
            warnings.warn(f"{dataset}: no {split} split ({missing}); converting {', '.join(here)}", UserWarning, stacklevel=3)
    return here


def under_root(root: str | Path, path: str | Path) -> str | None:
    """``path`` (relative to ``root``, or absolute) as a normalised absolute path if it stays under
    ``root``, else None. The check is lexical: ``..`` and absolute paths taken from annotation or
    list content cannot escape, while symlinks the user placed inside the dataset keep working."""
    base = os.path.normpath(os.path.abspath(str(root)))
    full = os.path.normpath(os.path.join(base, str(path)))
    return full if full == base or full.startswith(base + os.sep) else None


def outside_root(key: str, root: str | Path, path: str | Path) -> Record[Any]:
    """The failing record of a path from annotation or list content that leaves the dataset root."""
    return Record(key, Problem("outside_root", f"{path} is outside {root}", str(path)))


def problem(key: str, path: str | Path, reason: str, detail: str) -> Record[Any]:
    """A record that fails with ``reason`` (an orphan image or mask found while listing)."""
    return Record(key, Problem(reason, detail, str(path)))


# ---------------------------------------------------------------- reading

def read_input(path: str | Path, missing: str = "missing_image") -> bytes:
    """A file's bytes; a missing file is ``SampleError(missing)``, any other OS error ``unreadable_file``."""
    try:
        return read_local(path)
    except FileNotFoundError:
        raise SampleError(missing, str(path)) from None
    except OSError as err:
        raise SampleError("unreadable_file", f"{path}: {err.strerror or err}") from None


def image_dims(data: bytes, origin: str) -> tuple[int, int]:
    """(width, height) of encoded image bytes; an undecodable header is ``unreadable_image``."""
    try:
        return image_size(data)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("unreadable_image", f"{origin}: {err}") from None


def open_rgb(data: bytes, origin: str) -> Image.Image:
    """A fully decoded RGB PIL image (for converters that resize images)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("unreadable_image", f"{origin}: {err}") from None


_INDEX_MODES = {"L", "P", "1", "I;16", "I;16B", "I;16L", "I"}


def _open_label(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise SampleError("missing_mask", str(path)) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SampleError("unreadable_mask", f"{path}: {err}") from None


def read_index_map(path: Path) -> np.ndarray:
    """A single-channel label map exactly as stored (palette PNGs give their indices)."""
    img = _open_label(path)
    if img.mode not in _INDEX_MODES:
        raise SampleError("bad_mask", f"{path}: mode {img.mode}, expected a single-channel index map")
    arr = np.asarray(img)
    return arr.astype(np.uint8) if arr.dtype == np.bool_ else arr


def read_rgb_map(path: Path) -> np.ndarray:
    """An RGB-encoded label map (ADE20K ``_seg.png``) as HxWx3 uint8; alpha is dropped."""
    img = _open_label(path)
    if img.mode not in ("RGB", "RGBA"):
        raise SampleError("bad_mask", f"{path}: mode {img.mode}, expected an RGB-encoded label map")
    return np.asarray(img)[..., :3]


def read_grey_map(path: Path) -> np.ndarray:
    """An 8-bit greyscale view of a binary mask file: L as stored, ``1`` as 0/255, 16-bit scaled
    down, colour or palette files through their luminance."""
    img = _open_label(path)
    if img.mode == "L":
        return np.asarray(img)
    if img.mode == "1":
        return np.asarray(img).astype(np.uint8) * 255
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
    return np.asarray(img.convert("L"))


# ---------------------------------------------------------------- checks

def check_size(mask: np.ndarray, size: tuple[int, int], origin: str) -> None:
    """``size`` is the image's (width, height); a mask of another size is ``mask_size_mismatch``."""
    if mask.shape[:2] != (size[1], size[0]):
        raise SampleError(
            "mask_size_mismatch", f"{origin}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {size[0]}x{size[1]}"
        )


def apply_lut(values: np.ndarray, lut: np.ndarray, origin: str) -> np.ndarray:
    """Map label values through ``lut`` (entries < 0 mark values that must not occur)."""
    if values.size == 0:
        return lut[:0].reshape(values.shape).astype(np.uint16)
    top = int(values.max())
    if int(values.min()) < 0 or top >= len(lut):
        bad = np.unique(values[(values < 0) | (values >= len(lut))])
        raise SampleError("unknown_label", f"{origin}: values {bad[:10].tolist()} outside the label set")
    out = lut[values]
    if (out < 0).any():
        bad = np.unique(values[out < 0])
        raise SampleError("unknown_label", f"{origin}: values {bad[:10].tolist()} are not in the label set")
    return out


# ---------------------------------------------------------------- totals

def totals_notes(expected: int | None, found: int | None) -> dict[str, Any]:
    """Index notes for a split's published size and the number of samples planned from the source."""
    notes: dict[str, Any] = {}
    if expected is not None:
        notes["expected_samples"] = expected
    if found is not None:
        notes["found_samples"] = found
        if expected is not None and found < expected:
            notes["shortfall"] = expected - found
    return notes


def totals_report(build_report: Any, expected: Mapping[str, int], title: str) -> str:
    """One line per split: written vs. expected, the shortfall, and failure counts by reason."""
    lines = [title]
    for rep in build_report.splits:
        want = expected.get(rep.split)
        line = f"  {rep.split}: {rep.samples:,} samples written"
        if want is not None:
            line += f" of {want:,} expected"
            if rep.samples < want:
                line += f" (SHORTFALL {want - rep.samples:,})"
            elif rep.samples > want:
                line += f" ({rep.samples - want:,} more than the published count)"
        if rep.failures:
            line += "; failures: " + ", ".join(f"{k}={v}" for k, v in sorted(rep.failures.items()))
        lines.append(line)
    return "\n".join(lines)
