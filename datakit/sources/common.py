"""Shared pieces of the dataset converters: typed params, label-map reading, checks, totals.

Every converter validates its ``[params]`` through ``parse_params``, reads label maps through
``read_index_map`` (indices as stored, never colour-converted), turns bad input into
``SampleError(reason, detail)`` and reports a shortfall against the dataset's published
sample counts with ``totals_report``.
"""

from __future__ import annotations

import dataclasses
import io
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import numpy as np
from PIL import Image

from ..errors import InputError, SampleError
from ..sample import Record
from ..shards.codecs import image_size

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# ---------------------------------------------------------------- params

def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Turn a TOML value or a command-line string into the field's declared type."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise InputError(f"{where}: expected true/false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InputError(f"{where}: expected an integer, got {value!r}") from None
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(v).strip() for v in items if str(v).strip())
    if kind is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InputError(f"{where}: expected text, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported param type {kind!r}")  # a bug in a params class, not bad input


def parse_params(cls: type[T], params: Mapping[str, Any], where: str) -> T:
    """Build the frozen params dataclass ``cls``; unknown keys, bad types or bad choices raise InputError.

    A field listed in ``cls.CHOICES`` must take one of its values; a tuple field in ``CHOICES``
    must take values from it. ``src`` (when the class has it) must be a non-empty path.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown parameter(s) {unknown}; accepted: {sorted(fields)}")
    values = {name: _coerce(params[name], hints[name], f"{where}: {name}") for name in fields if name in params}
    choices: Mapping[str, Sequence[str]] = getattr(cls, "CHOICES", {})
    for name, allowed in choices.items():
        if name not in values:
            continue
        given = values[name] if isinstance(values[name], tuple) else (values[name],)
        bad = [v for v in given if v not in allowed]
        if bad:
            raise InputError(f"{where}: {name}={values[name]!r} is not one of {list(allowed)}")
    if "src" in fields and not str(values.get("src", "")).strip():
        raise InputError(f"{where}: no dataset root given (pass --src DIR or -p src=DIR)")
    return cls(**values)


def first_dir(root: Path, candidates: Sequence[str], what: str) -> Path:
    """The first existing folder among ``root/candidate``; InputError naming every place looked."""
    for cand in candidates:
        if (root / cand).is_dir():
            return root / cand
    raise InputError(f"{what} not found under {root} (looked for {', '.join(candidates)})")


def list_stems(folder: Path, suffix: str) -> dict[str, Path]:
    """``stem -> path`` for the files of one folder ending with ``suffix`` (case-insensitive)."""
    out: dict[str, Path] = {}
    low = suffix.lower()
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.name.lower().endswith(low) and entry.is_file():
                out[entry.name[: len(entry.name) - len(suffix)]] = entry
    return out


# ---------------------------------------------------------------- reading

def read_bytes(path: str | Path, missing: str = "missing_image") -> bytes:
    """A file's bytes; a missing file is ``SampleError(missing)``, any other OS error ``unreadable_file``."""
    try:
        return Path(path).read_bytes()
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


def decode_rgb(data: bytes, origin: str) -> Image.Image:
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


def problem_record(key: str, path: str | Path, reason: str, detail: str) -> Record:
    """A record that fails on load with ``reason`` (an orphan image or mask found while planning)."""
    return Record(key, {"path": str(path), "problem": reason, "detail": detail}, 0)


def raise_problem(record: Record) -> None:
    if "problem" in record.data:
        raise SampleError(record.data["problem"], record.data.get("detail", ""))


def file_size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


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
