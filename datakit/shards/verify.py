"""Re-read a built split and report every way it differs from what the build wrote.

Checked, per split: the index's own digest; every file in the folder is listed or owned (an extra
``.tar`` is reported); each shard's done marker is intact and agrees with the index; the card and
the source's extra files are the ones the index describes. Per shard: size, sha256, sample count,
safe member names and types, the split's member set, a full decode of every image and mask (within
the pixel limit), mask ids within the class table, and the declared mask encoding. A problem is
reported with its shard and sample; nothing raises, and memory stays flat (one sample at a time).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
from PIL import Image

from ..errors import CorruptShardError, DatakitError
from ..io.urls import is_remote, local_path
from ..jobs import run_local
from ..jobs.parts import seal_state
from ..progress import ProgressBar
from .card import CARD_NAME, dataset_card
from .codecs import check_pixels, decode_mask, png_layout
from .index import INDEX_NAME, ShardEntry, SplitIndex, find_indexes, index_url, load_index
from .reader import HashingReader, open_shard
from .tario import iter_samples

MARKER_SUFFIX = ".stats.json"
MAX_PROBLEMS_PER_SHARD = 20
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, DatakitError)


@dataclass
class Finding:
    shard: str
    key: str
    what: str

    def __str__(self) -> str:
        where = f"{self.shard}" + (f" sample {self.key}" if self.key else "")
        return f"{where}: {self.what}"


@dataclass
class VerifyReport:
    name: str
    shards: int = 0
    samples: int = 0
    problems: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Checks:
    """What every sample of a split must satisfy (built once per split, shipped to workers)."""

    members: tuple[str, ...]
    masks: tuple[tuple[str, int, str, bool], ...]  # ext, bits, encoding, ids checked against the table
    allowed: np.ndarray | None  # a boolean lookup of valid ids (class ids, ignore id, fills)

    @classmethod
    def of(cls, index: SplitIndex) -> "Checks":
        spec = index.spec
        allowed = None
        if spec.classes is not None:
            allowed = np.zeros(1 << 16, bool)
            ids = [e.id for e in spec.classes.entries if 0 <= e.id < (1 << 16)]
            ids += [m.fill for m in spec.masks]
            if spec.classes.ignore_index is not None:
                ids.append(spec.classes.ignore_index)
            allowed[np.array(ids, np.int64)] = True
        masks = tuple((m.ext, m.bits, m.encoding, m.role == "semantic") for m in spec.masks)
        return cls(tuple(spec.members()), masks, allowed)


def _check_mask(checks: Checks, ext: str, bits: int, encoding: str, semantic: bool, data: bytes,
                size: tuple[int, ...] | None) -> str | None:
    """What is wrong with one mask PNG: its encoding, its size, ids outside the class table. The ids are
    first bounded from the bands' extremes (decoded in C, nothing copied out); the pixels are looked at
    one by one only when that bound reaches an id the table lacks."""
    layout = png_layout(data)
    want = {"gray8": (8, 0), "gray16": (16, 0), "rgb16": (8, 2)}[encoding]
    if layout != want:
        return f"{ext} is not a {encoding} PNG (bit depth / colour type {layout})"
    with Image.open(io.BytesIO(data)) as img:
        if size is not None and (img.height, img.width) != size:
            return f"{ext} is {img.width}x{img.height}, image is {size[1]}x{size[0]}"
        extremes = img.getextrema()
    bound = _id_bound(extremes, encoding)
    if bound < 0:
        return f"{ext} has a non-zero blue channel (rgb16 ids are R + 256*G)"
    if checks.allowed is None or not semantic or checks.allowed[: bound + 1].all():
        return None
    return _foreign_ids(checks.allowed, decode_mask(data), ext)


def _id_bound(extremes: Any, encoding: str) -> int:
    """The largest id a mask can hold, from its bands' (min, max); -1 for an rgb16 mask with blue in it."""
    if encoding == "rgb16":
        (_, red), (_, green), blue = extremes
        return -1 if tuple(blue) != (0, 0) else int(red) + 256 * int(green)
    return int(extremes[1])


def _foreign_ids(allowed: np.ndarray, arr: np.ndarray, ext: str) -> str | None:
    """Ids of ``arr`` outside the class table; one pass over the pixels when the ids are 0..max all allowed."""
    top = int(arr.max())
    if allowed[: top + 1].all():
        return None
    present = np.flatnonzero(np.bincount(arr.ravel(), minlength=top + 1))
    bad = present[~allowed[present]]
    return f"{ext} holds ids {bad[:5].tolist()} not in the class table" if bad.size else None


def _decodes(data: bytes) -> tuple[int, int]:
    """(height, width) of an image whose whole entropy-coded stream decodes. libjpeg parses every scan
    and coefficient but reconstructs pixels at 1/8 scale (``draft``): the same structural check as a
    full decode at a fraction of the IDCT work. The bytes themselves are covered by the shard's sha256."""
    with Image.open(io.BytesIO(data)) as img:
        check_pixels(img.width, img.height, "jpg")
        size = img.height, img.width
        if img.format == "JPEG":
            img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
        img.load()
        if img.mode not in ("RGB", "L", "CMYK"):
            raise ValueError(f"jpg decodes to mode {img.mode}")
        return size


def check_sample(checks: Checks, raw: dict[str, Any]) -> str | None:
    """What is wrong with one sample, or None."""
    members = tuple(sorted(k for k in raw if k != "__key__"))
    if members != checks.members:
        return f"members {list(members)} differ from the split's {list(checks.members)}"
    size = None
    if "jpg" in raw:
        if not bytes(raw["jpg"][:2]) == b"\xff\xd8":
            return "jpg member is not JPEG bytes"
        size = _decodes(raw["jpg"])
    for ext, bits, encoding, semantic in checks.masks:
        problem = _check_mask(checks, ext, bits, encoding, semantic, raw[ext], size)
        if problem:
            return problem
    if "cls" in raw:
        int(raw["cls"])
    if "json" in raw:
        json.loads(raw["json"])
    return None


def verify_shard(index: SplitIndex, checks: Checks, entry: ShardEntry, progress: Callable[[int], None]) -> list[Finding]:
    """Problems found in one shard (empty when it is sound)."""
    name, path = entry.url, index.shard_path(entry)
    problems: list[Finding] = []
    count, key = 0, ""
    try:
        if is_remote(path):  # one pass: hash what the sample reader reads
            with open_shard(path) as f:
                reader = HashingReader(f)
                count, key = _samples(checks, reader, name, problems, progress)
                reader.drain()
            size, digest = reader.count, reader.hash.hexdigest()
        else:  # two passes over a local file: a plain hashing loop, then the samples (no wrapper per read)
            size, digest = _hash_file(path)
            with open_shard(path) as f:
                count, key = _samples(checks, f, name, problems, progress)
    except CorruptShardError as err:
        where = f"unreadable after sample {key}: {err}" if key else str(err)
        return problems + [Finding(name, "", where)]
    if size != entry.filesize:
        problems.append(Finding(name, "", f"size {size} bytes, the index says {entry.filesize}"))
    if entry.sha256 and digest != entry.sha256:
        problems.append(Finding(name, "", "sha256 does not match the index (the file changed after it was written)"))
    if count != entry.nsamples:
        problems.append(Finding(name, "", f"{count} samples, the index says {entry.nsamples}"))
    return problems


def _hash_file(path: str) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    try:
        with open(local_path(path), "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError as err:
        raise CorruptShardError(f"{path}: cannot read shard ({err.strerror or err})") from None
    return size, h.hexdigest()


def _samples(checks: Checks, reader: BinaryIO | HashingReader, name: str, problems: list[Finding],
             progress: Callable[[int], None]) -> tuple[int, str]:
    count, key, pending = 0, "", 0
    for raw in iter_samples(reader, name):  # type: ignore[arg-type]
        key = str(raw["__key__"])
        try:
            what = check_sample(checks, raw)
        except _DECODE_ERRORS as err:
            what = f"does not decode ({err})"
        if what and len(problems) < MAX_PROBLEMS_PER_SHARD:
            problems.append(Finding(name, key, what))
        count += 1
        pending += 1
        if pending >= 32:
            progress(pending)
            pending = 0
    progress(pending)
    return count, key


def _folder_problems(index: SplitIndex) -> list[Finding]:
    """Files of a local split folder that the index does not account for, and markers, card and extra
    files that disagree with it."""
    if is_remote(index.base):
        return []
    folder = Path(local_path(index.base))
    listed = {e.url: e for e in index.shards}
    extras: dict[str, str] = dict(index.extra.get("extra_files", {}))
    problems = []
    for name in sorted(os.listdir(folder)):
        problem = _file_problem(index, folder, name, listed, extras)
        if problem:
            problems.append(Finding(name, "", problem))
    for url in listed:
        if not (folder / url).is_file():
            problems.append(Finding(url, "", "listed in the index but missing"))
        elif index.seal != "unsealed" and not (folder / (url[:-4] + MARKER_SUFFIX)).is_file():
            problems.append(Finding(url, "", "has no done marker (.stats.json)"))
    return problems


def _file_problem(index: SplitIndex, folder: Path, name: str, listed: dict[str, ShardEntry],
                  extras: dict[str, str]) -> str | None:
    if name == INDEX_NAME or name in listed:
        return None
    if name == CARD_NAME:
        if index.seal == "unsealed":
            return None
        card = dataset_card(index.spec, index.fingerprint())
        return None if (folder / name).read_bytes() == card else "the dataset card was changed"
    if name in extras:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        return None if digest == extras[name] else "changed after the build (its sha256 differs from the index)"
    if name.endswith(MARKER_SUFFIX):
        return _marker_problem(folder / name, listed.get(name[: -len(MARKER_SUFFIX)] + ".tar"))
    if name.endswith(".tar"):
        return "a shard the index does not list"
    return "a file the build did not write"


def _marker_problem(path: Path, entry: ShardEntry | None) -> str | None:
    try:
        marker = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return "done marker is not valid JSON"
    state = seal_state(marker)
    if state == "broken":
        return "done marker was changed after it was written (its digest does not match)"
    if entry is None:
        return None if marker.get("file") is None else "done marker of a shard the index does not list"
    if marker.get("sha256") != entry.sha256 or marker.get("bytes") != entry.filesize or marker.get("nsamples") != entry.nsamples:
        return "done marker disagrees with the index (sha256, bytes or samples)"
    return None


def verify_index(index: SplitIndex, workers: int = 1, progress: Callable[[int], None] | None = None) -> VerifyReport:
    report = VerifyReport(f"{index.spec.dataset}/{index.spec.split}", len(index.shards), index.total)
    if index.seal == "unsealed":
        report.notes.append("index has no digest (written by an older datakit): its fields are not checked")
    report.problems.extend(_folder_problems(index))
    local = None if is_remote(index.base) else Path(local_path(index.base))
    present = [e for e in index.shards if local is None or (local / e.url).is_file()]  # missing ones: reported above
    fn = partial(verify_shard, index, Checks.of(index))
    for entry, res in zip(present, run_local(fn, present, workers, progress or (lambda n: None))):
        if res.ok:
            report.problems.extend(res.value)
        else:
            report.problems.append(Finding(entry.url, "", str(res.error)))
    return report


def verify(path: str, workers: int = 1, progress: bool = False) -> list[VerifyReport]:
    """Verify every split found at ``path`` (a split folder, an index file or a dataset root); a split
    whose index cannot be read is reported, not raised. ``progress``: a bar or batch-log status lines."""
    reports = []
    for where in _index_paths(path):
        try:
            index = load_index(where)
        except DatakitError as err:
            reports.append(VerifyReport(str(where), problems=[Finding(INDEX_NAME, "", str(err))]))
            continue
        with ProgressBar(index.total, f"verify {index.spec.dataset}/{index.spec.split}", progress) as bar:
            reports.append(verify_index(index, workers, bar.advance))
    return reports


def _index_paths(path: str) -> list[str]:
    """The index files under ``path`` (found without parsing them)."""
    if is_remote(path):
        return [path]
    p = Path(local_path(path))
    if p.is_file():
        index_url(p)  # a file that is no index is a wrong argument (exit 2), not a damaged split
    if p.is_file() or (p / INDEX_NAME).exists():
        return [str(p)]
    found = sorted(str(q.parent) for q in p.glob(f"*/{INDEX_NAME}"))
    return found or [ix.base for ix in find_indexes(path)]
