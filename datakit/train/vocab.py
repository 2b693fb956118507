"""One label space for several datasets: the union of their class tables, matched by name (as LarvSeg)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shards.spec import ClassTable
from .losses import IGNORE


@dataclass(frozen=True)
class Vocabulary:
    names: tuple[str, ...]
    luts: tuple[np.ndarray, ...]  # per dataset: local id -> union id (IGNORE for the ignore id / unknown ids)

    @classmethod
    def union(cls, tables: list[ClassTable]) -> "Vocabulary":
        names: list[str] = []
        where: dict[str, int] = {}
        luts = []
        for table in tables:
            size = max(table.max_id, table.ignore_index or 0) + 1
            lut = np.full(size, IGNORE, dtype=np.int64)
            for entry in table.entries:
                key = entry.name.strip().lower()
                if key not in where:
                    where[key] = len(names)
                    names.append(entry.name)
                lut[entry.id] = where[key]
            luts.append(lut)
        return cls(tuple(names), tuple(luts))

    def members(self, dataset: int) -> np.ndarray:
        """Boolean mask over the union ids: the classes dataset ``dataset`` has (LarvSeg's per-dataset softmax)."""
        keep = np.zeros(len(self.names), dtype=bool)
        lut = self.luts[dataset]
        keep[lut[lut >= 0]] = True
        return keep

    def map(self, dataset: int, labels: np.ndarray) -> np.ndarray:
        """Local ids → union ids; ids outside the table become IGNORE."""
        lut = self.luts[dataset]
        labels = np.asarray(labels).astype(np.int64)
        inside = (labels >= 0) & (labels < len(lut))
        return np.where(inside, lut[np.clip(labels, 0, len(lut) - 1)], IGNORE)
