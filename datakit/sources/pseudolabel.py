"""An existing split of shards plus one predicted mask member per sample (PASS's pseudo-label step).

``PseudoLabelSource(data, predictions, member)`` re-emits every sample of the split at ``data``
unchanged (the JPEG bytes pass through) and adds ``member`` (e.g. ``pseudo.png``) read from
``<predictions>/<key>.png``: single-channel ids in the split's own class table. ``records`` and
``spec`` are pure functions of the parameters and the files: records carry each sample's byte
ranges in its shard (scanned once from the tar headers), so ``load`` reads only that sample.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, SampleError
from ..io import is_remote
from ..shards.codecs import decode_mask
from ..shards.index import SplitIndex, load_index
from ..shards.scan import scan_samples
from ..shards.spec import MaskMember, SplitSpec, default_encoding
from .base import Listing, Record, Sample
from .common import input_file, outside_root, under_root


@dataclass(frozen=True, slots=True)
class StoredSample:
    """Where one sample lies in its shard (member byte ranges from ``start``) and its prediction file."""

    shard: str
    start: int
    members: tuple[tuple[str, int, int], ...]
    prediction: str


@dataclass(frozen=True)
class PseudoLabelSource:
    """A split of shards (local) and a folder of ``<key>.png`` predictions to add as ``member``."""

    data: str
    predictions: str
    member: str = "pseudo.png"
    name: str = "pseudolabel"

    def _index(self) -> SplitIndex:
        return load_index(self.data)

    def roots(self) -> tuple[str, ...]:
        """The input split only: the predictions live under the build's own output (``<out>/predictions``)."""
        return (self._index().base,)

    def splits(self) -> Sequence[str]:
        return [self._index().spec.split]

    def spec(self, split: str) -> SplitSpec:
        """The input split's spec with ``member`` added (8- or 16-bit to fit the class table; fill = ignore id)."""
        base = self._index().spec
        if base.classes is None:
            raise InputError(f"{self.data}: the split has no class table; pseudo-labels are ids in it")
        ignore = base.ignore_id
        added = MaskMember.for_ids(max(base.classes.max_id, ignore), ext=self.member, fill=ignore)
        kept = tuple(replace(m, encoding=default_encoding(m.bits)) for m in base.masks if m.ext != self.member)
        masks = kept + (added,)
        notes = {**base.notes, "pseudolabel": {"member": self.member, "from": self.predictions}}
        return replace(base, masks=masks, notes=notes)

    def records(self, split: str) -> Listing:
        """One record per stored sample, in stored order, with its shard and member byte ranges."""
        index = self._index()
        out: list[Record[StoredSample]] = []
        for entry in index.shards:
            path = index.shard_path(entry)
            if is_remote(path):
                raise InputError(f"{path}: pseudo-labelling reads local shards only")
            shard = input_file(path)
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size

                def read_at(offset: int, length: int, f=f) -> bytes:
                    f.seek(offset)
                    return f.read(length)

                for span in scan_samples(read_at, size, path):
                    pred = under_root(self.predictions, f"{span.key}.png")
                    if pred is None:
                        out.append(outside_root(span.key, self.predictions, f"{span.key}.png"))
                        continue
                    payload = StoredSample(path, span.start, tuple(span.members), pred)
                    out.append(Record(span.key, payload, span.stop - span.start, (shard, input_file(pred))))
        return Listing(out)

    def load(self, record: Record[StoredSample]) -> Sample:
        stored = record.payload
        assert isinstance(stored, StoredSample)
        raw: dict[str, bytes] = {}
        with open(stored.shard, "rb") as f:
            for ext, offset, size in stored.members:
                f.seek(stored.start + offset)
                raw[ext] = f.read(size)
        sample = Sample(record.key, image=raw.get("jpg"), origin=record.key)
        for ext, data in raw.items():
            if ext.endswith(".png") and ext != self.member:
                sample.masks[ext] = decode_mask(data)
        if "cls" in raw:
            sample.cls = int(raw["cls"])
        if "json" in raw:
            sample.meta = json.loads(raw["json"])
        sample.masks[self.member] = _prediction(stored.prediction)
        return sample


def _prediction(path: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "I;16", "I;16B", "I;16L", "I"):
                raise SampleError("bad_prediction", f"{path}: mode {img.mode}, expected a single-channel id PNG")
            return np.asarray(img).astype(np.int64)
    except FileNotFoundError:
        raise SampleError("missing_prediction", path) from None
    except OSError as err:
        raise SampleError("bad_prediction", f"{path}: {err}") from None
