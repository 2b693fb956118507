"""Write one shard atomically: ``<name>.tar.tmp``, renamed to ``<name>.tar`` when complete.

The writer encodes each sample's members in a fixed order and records bad samples by reason. It
does not decide when a shard is done: the build publishes the tar and then its done marker
(``<name>.stats.json``, built from ``ShardStats``) through the resumable-parts core.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SampleError
from .codecs import encode_mask, prepare_image
from .spec import SplitSpec
from .tario import TarStream

_KEY_BAD = re.compile(r"[^\w\-]", re.UNICODE)  # keeps letters and digits of any script, _ and -
MAX_LISTED_FAILURES = 1000


def sanitize_key(raw: str) -> str:
    """A webdataset key: no dots (readers split the extension at the first one), no slashes (keys are
    never paths), no spaces or control characters; letters of any script are kept. Empty: ``_``."""
    if raw.isascii() and raw.replace("_", "a").replace("-", "a").isalnum():  # already a key (the common case)
        return raw
    key = _KEY_BAD.sub("_", raw.strip())
    return key or "_"


@dataclass
class Failure:
    key: str
    origin: str
    reason: str
    detail: str = ""


@dataclass
class ShardStats:
    """What a finished shard task reports; with the task's fingerprint it is the shard's done marker."""

    name: str
    split: str
    file: str | None
    nsamples: int = 0
    bytes: int = 0
    sha256: str = ""
    converted_images: int = 0
    filled_masks: int = 0
    failures: list[Failure] = field(default_factory=list)
    failure_counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "ShardStats":
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in obj.items() if k in known}
        fields["failures"] = [Failure(**f) for f in obj.get("failures", [])]
        return cls(**fields)


def encode_members(sample_key: str, spec: SplitSpec, image: Any, masks: dict[str, np.ndarray],
                   cls: int | None, meta: dict[str, Any], origin: str) -> tuple[list[tuple[str, bytes]], bool, int]:
    """The tar members of one sample in a fixed order, plus (image converted?, masks filled)."""
    members: list[tuple[str, bytes]] = []
    converted, filled = False, 0
    width = height = None
    extra = set(masks) - {m.ext for m in spec.masks}
    if extra:
        raise SampleError("undeclared_member", f"{origin}: {sorted(extra)} not in the split's members")
    if spec.image:
        if image is None:
            raise SampleError("missing_image", origin)
        enc = prepare_image(image, origin)
        members.append(("jpg", enc.data))
        converted, width, height = enc.converted, enc.width, enc.height
        if enc.orientation != 1:
            meta = {**meta, "exif_orientation": enc.orientation}
    for member in spec.masks:
        arr = masks.get(member.ext)
        if arr is None:
            if width is None:
                raise SampleError("missing_mask", f"{origin}: no {member.ext} and no image to size a fill")
            arr = np.full((height, width), member.fill, dtype=np.uint16 if member.bits == 16 else np.uint8)
            filled += 1
        elif width is not None and arr.shape[:2] != (height, width):
            raise SampleError("mask_size_mismatch",
                              f"{origin}: {member.ext} is {arr.shape[1]}x{arr.shape[0]}, image is {width}x{height}")
        members.append((member.ext, encode_mask(arr, member.bits, member.encoding)))
    if spec.cls:
        if cls is None:
            raise SampleError("missing_label", origin)
        members.append(("cls", str(int(cls)).encode()))
    if spec.meta:
        members.append(("json", json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()))
    members.sort(key=lambda m: m[0])
    return members, converted, filled


class ShardWriter:
    """Writes samples into ``<dir>/<name>.tar`` under a temporary name; ``close`` renames it into place."""

    def __init__(self, directory: Path, name: str, spec: SplitSpec, strict: bool = False, fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.spec = spec
        self.strict = strict
        self.stats = ShardStats(name=name, split=spec.split, file=f"{name}.tar")
        self.final = self.directory / f"{name}.tar"
        self.tmp = self.directory / f"{name}.tar.tmp"
        self._fh = open(self.tmp, "wb")
        self._tar = TarStream(self._fh, background=True)
        self._keys: set[str] = set()
        self._reasons: Counter[str] = Counter()
        self._t0 = time.perf_counter()

    def fail(self, key: str, origin: str, reason: str, detail: str = "") -> None:
        self._reasons[reason] += 1
        if len(self.stats.failures) < MAX_LISTED_FAILURES:
            self.stats.failures.append(Failure(key, origin, reason, detail))

    def write(self, key: str, image: Any = None, masks: dict[str, np.ndarray] | None = None,
              cls: int | None = None, meta: dict[str, Any] | None = None, origin: str = "") -> bool:
        """Add one sample; a bad sample is recorded (or raised with ``strict``), never dropped silently."""
        try:
            if key in self._keys:
                raise SampleError("duplicate_key", f"{origin}: key {key!r} already in shard")
            members, converted, filled = encode_members(key, self.spec, image, masks or {}, cls, meta or {}, origin)
        except SampleError as err:
            if self.strict:
                raise
            self.fail(key, origin, err.reason, err.detail)
            return False
        self._tar.add_many([(f"{key}.{ext}", data) for ext, data in members])
        self._keys.add(key)
        self.stats.nsamples += 1
        self.stats.converted_images += int(converted)
        self.stats.filled_masks += filled
        return True

    def abort(self) -> None:
        """Drop the partial shard (a failed write must not leave anything that looks complete)."""
        self._tar.close()
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def close(self) -> ShardStats:
        """Finish the tar and rename it into place (an empty shard leaves no file)."""
        try:
            self.stats.sha256 = self._tar.finish()
            self._fh.flush()
            if self.fsync:  # durability against power loss; a killed process never needs it
                os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError:
            self.abort()
            raise
        self.stats.failure_counts = dict(sorted(self._reasons.items()))
        if self.stats.nsamples == 0:
            self.tmp.unlink(missing_ok=True)
            self.stats.file, self.stats.sha256 = None, ""
        else:
            self.stats.bytes = self._tar.bytes_written
            os.replace(self.tmp, self.final)
        self.stats.duration_s = round(time.perf_counter() - self._t0, 3)
        return self.stats
