"""What a source is: the splits it has, their records, and a loader that turns one into a Sample.

``records`` runs once on the driver and must be deterministic; ``load`` runs in a worker and
does the real I/O. A sample that cannot be loaded raises ``SampleError(reason, detail)``.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from ..sample import Record, Sample
from ..shards.spec import SplitSpec

__all__ = ["Record", "Sample", "Source"]


@runtime_checkable
class Source(Protocol):
    """A dataset family reader. Implementations must be picklable (they travel to workers)."""

    name: str

    def splits(self) -> Sequence[str]: ...

    def spec(self, split: str) -> SplitSpec: ...

    def records(self, split: str) -> Sequence[Record]: ...

    def load(self, record: Record) -> Sample: ...
