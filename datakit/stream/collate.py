"""Batch sample dicts into columns: equal-shaped arrays become one tensor, filled sample by sample.

Each decoded array is copied into its batch slot right after decoding, while it is still in the
CPU cache, and in a loader worker the batch tensor lives in shared memory from the start (one
copy, as torch's default_collate). A column whose arrays differ in shape or dtype (images
without a resizing transform) becomes a list of numpy arrays; ints become an int64 tensor;
anything else (keys, metadata) stays a list. Masks keep their dtype (uint8 or uint16).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info


def _empty(shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
    """An uninitialised tensor, in shared memory when called in a loader worker."""
    if get_worker_info() is None:  # numpy's allocator reuses freed batch memory (no fresh page faults)
        return torch.from_numpy(np.empty(shape, dtype=dtype))
    tdtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    try:
        storage = torch.UntypedStorage._new_shared(nbytes)
    except AttributeError:  # pragma: no cover - older torch: one extra copy when pickled
        return torch.from_numpy(np.empty(shape, dtype=dtype))
    strides = tuple(int(s) for s in torch.empty(shape, dtype=tdtype, device="meta").stride())
    return torch.empty(0, dtype=tdtype).set_(storage, 0, shape, strides)


class _Column:
    """One key's values: a preallocated tensor while every value is an equal-shaped array, else a list."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tensor: torch.Tensor | None = None
        self.rows: np.ndarray | None = None
        self.values: list[Any] = []

    def put(self, i: int, value: Any) -> None:
        rows = self.rows
        if rows is not None:
            if isinstance(value, np.ndarray) and value.shape == rows.shape[1:] and value.dtype == rows.dtype:
                rows[i] = value
                return
            self._to_list(i)
        elif i == 0 and isinstance(value, np.ndarray):
            self.tensor = _empty((self.size, *value.shape), value.dtype)
            self.rows = self.tensor.numpy()
            self.rows[0] = value
            return
        self.values.extend([None] * (i - len(self.values)))
        self.values.append(value)

    def _to_list(self, filled: int) -> None:
        assert self.rows is not None
        self.values = [self.rows[j].copy() for j in range(filled)]
        self.tensor = self.rows = None

    def result(self, count: int) -> Any:
        if self.tensor is not None:
            return self.tensor if count == self.size else self.tensor[:count]
        values = self.values + [None] * (count - len(self.values))
        if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            return torch.tensor([int(v) for v in values], dtype=torch.int64)
        if values and all(isinstance(v, (bool, np.bool_)) for v in values):  # flags such as __pad__
            return torch.tensor(values, dtype=torch.bool)
        return values


class BatchBuilder:
    """Collects up to ``size`` samples column by column; ``result()`` gives the batch dict."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.columns: dict[str, _Column] = {}

    def add(self, sample: dict[str, Any]) -> None:
        i = self.count
        for key, value in sample.items():
            col = self.columns.get(key)
            if col is None:
                col = self.columns[key] = _Column(self.size)
            col.put(i, value)
        for key, col in self.columns.items():
            if key not in sample:  # a key some samples lack (a mix): the column becomes a list with None
                col.put(i, None)
        self.count += 1

    def result(self) -> dict[str, Any]:
        return {k: c.result(self.count) for k, c in self.columns.items()}


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One dict of columns from a list of sample dicts."""
    builder = BatchBuilder(len(samples))
    for s in samples:
        builder.add(s)
    return builder.result()
