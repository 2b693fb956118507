"""The two value types that flow through a build: a cheap Record and a loaded Sample."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Record:
    """One sample to be written: its key, where it lives, and an estimate of its stored size.

    Records are made once on the driver, in a deterministic order, and travel to workers inside
    shard tasks, so ``data`` must stay small and picklable (paths, ids, a few annotations).
    """

    key: str
    data: Mapping[str, Any] = field(default_factory=dict)
    size_hint: int = 0


@dataclass
class Sample:
    """A loaded sample, ready for the shard writer.

    ``image`` is the source file's bytes (passed through when it is already an RGB JPEG) or a
    decoded ``HxWx3`` uint8 array. ``masks`` maps a member extension (e.g. ``seg.png``) to a 2-D
    integer array; a declared mask that is missing is filled with the member's fill id.
    """

    key: str
    image: bytes | np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    cls: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
