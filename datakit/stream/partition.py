"""Split one epoch's global order into ranks x workers so that consumption is always a prefix.

Positions ``[cursor, total)`` of the epoch order are cut into global steps of
``batch_size * world_size`` positions; at step ``k`` rank ``r`` takes the ``r``-th batch-sized
slice. Inside a rank, batch ``i`` is made by loader worker ``i % num_workers``, which is the
order in which a PyTorch DataLoader hands batches out. So after ``k`` steps on every rank exactly
the first ``cursor + k * batch_size * world_size`` positions are consumed, whatever the
topology: the resume cursor is one number and survives a change of ranks or workers.

Tail modes (what happens to the last ``T < batch_size * world_size`` positions):

- ``exact``: every sample once; the last step gives each rank ``T // R`` or ``T // R + 1``
  samples (a smaller last batch). Needs ``T >= R``, else construction fails with a clear error.
- ``pad``: the last step is full; positions past the end wrap to the start of the epoch order,
  so a few samples appear twice.
- ``drop``: the last ``T`` positions are skipped this epoch (a different set every epoch).

Every rank always gets the same number of batches, so DDP collectives never hang.
"""

from __future__ import annotations

from typing import Callable

from ..errors import InputError

Span = tuple[int, int]  # [start, stop) positions in the epoch order; stop may exceed total (pad)


def _tail_exact(base: int, left: int, batch_size: int, world_size: int, rank: int) -> Span | None:
    if left < world_size:
        raise InputError(
            f"tail='exact' cannot give each of {world_size} ranks a sample in the last step: only "
            f"{left} sample(s) remain; use tail='pad' or tail='drop', or another batch size"
        )
    return base + left * rank // world_size, base + left * (rank + 1) // world_size


def _tail_pad(base: int, left: int, batch_size: int, world_size: int, rank: int) -> Span | None:
    return base + rank * batch_size, base + (rank + 1) * batch_size


def _tail_drop(base: int, left: int, batch_size: int, world_size: int, rank: int) -> Span | None:
    return None


TAILS: dict[str, Callable[[int, int, int, int, int], Span | None]] = {
    "exact": _tail_exact,
    "pad": _tail_pad,
    "drop": _tail_drop,
}


def check_topology(batch_size: int, world_size: int, rank: int, tail: str) -> None:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, not {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
    if tail not in TAILS:
        raise InputError(f"unknown tail mode {tail!r}; choose one of {sorted(TAILS)}")


def rank_batches(total: int, cursor: int, batch_size: int, world_size: int, rank: int, tail: str) -> list[Span]:
    """The position spans of this rank's batches for the rest of the epoch, in order."""
    check_topology(batch_size, world_size, rank, tail)
    step = batch_size * world_size
    left = max(0, total - cursor)
    full, rest = divmod(left, step)
    spans = [(cursor + k * step + rank * batch_size, cursor + k * step + (rank + 1) * batch_size) for k in range(full)]
    if rest:
        last = TAILS[tail](cursor + full * step, rest, batch_size, world_size, rank)
        if last is not None:
            spans.append(last)
    return spans


def worker_batches(spans: list[Span], worker: int, num_workers: int) -> list[tuple[int, Span]]:
    """(rank-local batch number, span) of the batches one loader worker makes."""
    if num_workers < 1 or not 0 <= worker < num_workers:
        raise InputError(f"worker {worker} is not in 0..{num_workers - 1}")
    return [(i, spans[i]) for i in range(worker, len(spans), num_workers)]


def consumed_after(total: int, cursor: int, batch_size: int, world_size: int, tail: str, steps: int) -> int:
    """The cursor after every rank has taken ``steps`` more batches (capped at the epoch's end)."""
    if steps <= 0:
        return cursor
    step = batch_size * world_size
    full, rest = divmod(max(0, total - cursor), step)
    if steps <= full:
        return cursor + steps * step
    if rest and tail == "pad":
        return cursor + (full + 1) * step
    return total


def is_done(total: int, cursor: int, batch_size: int, world_size: int, tail: str) -> bool:
    """True when no batch is left in this epoch from ``cursor`` on."""
    left = total - cursor
    if left <= 0:
        return True
    return tail == "drop" and left < batch_size * world_size
