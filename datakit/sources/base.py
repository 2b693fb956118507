"""The source contract: what a dataset reader gives the build, and nothing about how it is built.

A source lists ``Record``s and loads one into a ``Sample``. It never writes, never fingerprints
and keeps no state between calls: ``spec(split)`` depends only on its parameters, and
``records(split)`` only on its parameters and the input files, so every call returns the same
thing (the pipeline may call them in any order, on any machine).

- ``Record``: a key, a small typed payload (what ``load`` needs) or a ``Problem``, and the input
  files the sample reads, stamped when listed (``InputFile``). The pipeline fingerprints records
  from these alone, so a source need not know how resume works.
- ``Problem``: an input found broken while listing (an image without its mask, a path outside the
  dataset root...). The build records it as a failed sample with its reason; ``load`` never sees it.
- ``Listing``: the records of a split in a deterministic order, plus facts about the listing for
  the index notes (counts found, skipped folders...). ``records`` may be a generator, so a
  100M-image folder streams; ``facts`` is complete once the records have been consumed.
- ``Sample``: a loaded sample, ready for the shard writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Iterable, NamedTuple, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from ..shards.spec import SplitSpec

P = TypeVar("P")


class InputFile(NamedTuple):
    """One file a sample reads, as it was when listed. ``size`` is -1 when the file was not there;
    ``digest`` is a content checksum when the container already has one (a zip member's CRC).
    (A named tuple, like ``Record``: a planner makes millions of them, and they build 4x faster
    than frozen dataclasses.)"""

    path: str
    size: int = -1
    mtime_ns: int = 0
    digest: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a listed sample cannot be built; it becomes a failure of that reason in the index."""

    reason: str
    detail: str = ""
    path: str = ""


class Record(NamedTuple, Generic[P]):
    """One sample to build: key, payload (or Problem), estimated stored bytes, input files."""

    key: str
    payload: P | Problem
    size_hint: int = 0
    inputs: tuple[InputFile, ...] = ()

    @property
    def problem(self) -> Problem | None:
        return self.payload if isinstance(self.payload, Problem) else None


@dataclass
class Listing:
    """The records of one split and what listing them found (see the module docstring)."""

    records: Iterable[Record[Any]]
    facts: dict[str, Any] = field(default_factory=dict)


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


@runtime_checkable
class Source(Protocol):
    """A dataset family reader. Implementations are picklable: they travel to worker processes."""

    @property
    def name(self) -> str: ...

    def splits(self) -> Sequence[str]: ...

    def spec(self, split: str) -> SplitSpec: ...

    def records(self, split: str) -> Listing: ...

    def load(self, record: Record[Any]) -> Sample: ...

    def roots(self) -> tuple[str, ...]:
        """The folders (or files) the inputs live in: fingerprints name files relative to them, the
        build refuses an output inside them, and paths taken from annotation content must stay under them."""
        ...


def roots_of(source: Any) -> tuple[str, ...]:
    """A source's input roots; a source that reads no files (generated, in memory) may omit ``roots``."""
    hook = getattr(source, "roots", None)
    return tuple(str(r) for r in hook()) if callable(hook) else ()


def listing_of(source: Any, split: str) -> Listing:
    """``source.records(split)`` as a Listing (a plain sequence of records is accepted too)."""
    found = source.records(split)
    return found if isinstance(found, Listing) else Listing(found)


def extra_files(source: Source, split: str) -> dict[str, bytes]:
    """Files a source adds beside a split's shards (COCO-20K's COCOeval JSON); most add none."""
    hook = getattr(source, "extra_files", None)
    return dict(hook(split)) if callable(hook) else {}


__all__ = ["InputFile", "Listing", "Problem", "Record", "Sample", "Source", "extra_files", "listing_of", "roots_of"]
