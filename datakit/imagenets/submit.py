"""``datakit submit imagenets``: check test predictions and pack the zip the evaluation server takes.

The zip root holds ``<wnid>/<ILSVRC2012_val_X>.png`` for every test image (RGB PNG, id = R + 256*G,
at the image's size), ``method.txt`` in the official wording and, for the fully unsupervised
protocol, ``match.json``. Entries have fixed timestamps, so equal inputs give equal zips.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError
from ..io.atomic import atomic_write_with
from ..io.read import read_local
from .lists import IGNORE_ID, load_lists
from .testsizes import Sizes, sizes_of_test_images

SHOWN = 5
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_RGB_TYPES = {2: "RGB", 6: "RGBA"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class MethodInfo:
    """The fields of ``method.txt``; ``null`` where the user gives nothing, as upstream."""

    method: str = "example submission"
    train_data: str = "null"
    train_scheme: str = "null"
    arch: str = "null"
    link: str = "null"
    description: str = "null"

    def text(self) -> str:
        """The official layout, with no final newline."""
        return (f"Method name: {self.method}\nTraining data: {self.train_data}\n"
                f"Training scheme: {self.train_scheme}\nNetworks: {self.arch}\n"
                f"Paper/Project link: {self.link}\nMethod description: {self.description}")


@dataclass(frozen=True)
class SubmitReport:
    """What ``write_submission`` wrote."""

    out: str
    subset: int
    predictions: int
    ignored_files: int
    bytes: int
    match: bool


def png_header(path: str) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk; ValueError if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != _PNG_SIG or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height, depth, ctype = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, ctype


def _scan(pred: Path) -> dict[str, str]:
    """``<wnid>/<stem>`` -> path of every PNG one folder down in the prediction root."""
    found = {}
    for sub in sorted(pred.iterdir()):
        if sub.is_dir():
            for f in sorted(sub.iterdir()):
                if f.suffix == ".png" and f.is_file():
                    found[f"{sub.name}/{f.stem}"] = str(f)
    return found


def _problem(rel: str, path: str | None, size: tuple[int, int], by_stem: dict[str, str]) -> str | None:
    """What is wrong with one expected prediction file, or None."""
    if path is None:
        elsewhere = by_stem.get(rel.split("/")[1])
        hint = f" (found under {elsewhere}/: the folder must be the class from the test list)" if elsewhere else ""
        return f"{rel}.png is missing{hint}"
    try:
        width, height, depth, ctype = png_header(path)
    except (OSError, ValueError) as err:
        return f"{rel}.png is not a readable PNG ({err})"
    if ctype not in _RGB_TYPES or depth != 8:
        return (f"{rel}.png is not an 8-bit RGB PNG (colour type {ctype}, depth {depth}); "
                "encode id as (id % 256, id // 256, 0)")
    if (width, height) != size:
        return f"{rel}.png is {width}x{height}, the image is {size[0]}x{size[1]}"
    return None


def check_test_predictions(pred_dir: str, subset: int, sizes: Sizes) -> tuple[list[tuple[str, str]], int]:
    """(zip name, path) of every test prediction, and how many other PNGs were left out.

    Raises one InputError naming the first few missing, unreadable or wrongly sized files."""
    pred = Path(pred_dir)
    if not pred.is_dir():
        raise InputError(f"prediction folder not found: {pred_dir}")
    found = _scan(pred)
    expected = [f"{e.wnid}/{e.name.rsplit('.', 1)[0]}" for e in load_lists(subset).test]
    extra = {k.split("/")[1]: k.split("/")[0] for k in set(found) - set(expected)}
    problems = [p for rel in expected if (p := _problem(rel, found.get(rel), sizes[rel], extra))]
    if problems:
        shown = "; ".join(problems[:SHOWN]) + ("; ..." if len(problems) > SHOWN else "")
        raise InputError(f"{len(problems)} of {len(expected)} ImageNetS{subset} test predictions in {pred_dir} "
                         f"are wrong: {shown}")
    return [(f"{rel}.png", found[rel]) for rel in sorted(expected)], len(found) - len(expected)


def read_match(path: str, subset: int) -> bytes:
    """The bytes of a ``match.json`` after checking it maps cluster ids to class ids 0..N."""
    try:
        data = Path(path).read_bytes()
        obj = json.loads(data)
    except (OSError, ValueError) as err:
        raise InputError(f"match file {path}: {err}") from None
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"match file {path}: expected a JSON object of cluster id -> class id")
    for key, value in obj.items():
        if not str(key).lstrip("-").isdigit() or not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"match file {path}: entry {key!r}: {value!r} is not an integer pair")
        if not (0 <= value <= subset or value == IGNORE_ID):
            raise InputError(f"match file {path}: {key} -> {value} is not a class of ImageNetS{subset}")
    return data


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed timestamp and mode (reproducible archives)."""
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.external_attr = 0o644 << 16
    return info


def write_submission(pred_dir: str, subset: int, images: str, out: str, method: MethodInfo,
                     match: str | None = None) -> SubmitReport:
    """Check every test prediction against the image sizes from ``images``, then write ``out`` atomically."""
    if not Path(pred_dir).is_dir():
        raise InputError(f"prediction folder not found: {pred_dir}")
    sizes = sizes_of_test_images(images, subset)
    files, ignored = check_test_predictions(pred_dir, subset, sizes)
    match_bytes = read_match(match, subset) if match else None
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)

    def write(fh: BinaryIO) -> None:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            for name, path in files:
                zf.writestr(_entry(name), read_local(path))
            zf.writestr(_entry("method.txt"), method.text().encode("utf-8"), zipfile.ZIP_DEFLATED)
            if match_bytes is not None:
                zf.writestr(_entry("match.json"), match_bytes, zipfile.ZIP_DEFLATED)

    atomic_write_with(target, write, fsync=True)
    return SubmitReport(str(target), subset, len(files), ignored, target.stat().st_size, match_bytes is not None)
