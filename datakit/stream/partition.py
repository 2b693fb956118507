"""Split one epoch's global order into ranks x workers so that consumption is always a prefix.

Positions ``[cursor, total)`` of the epoch order are cut into global steps, normally of
``batch_size * world_size`` positions; a step's positions are split evenly over the ranks in rank
order (a full step gives each rank one batch of ``batch_size``). Inside a rank, batch ``i`` is
made by loader worker ``i % num_workers``, the order in which a PyTorch DataLoader hands batches
out. So after ``k`` steps on every rank exactly the first positions up to the end of step ``k``
are consumed, whatever the topology: the resume cursor is one number and survives a change of
ranks or workers.

Tail modes (the last ``T < batch_size * world_size`` positions):

- ``exact``: every sample once. The last step is split evenly (``T // R`` or ``T // R + 1`` per
  rank); when ``T < R`` the last full step and the tail are re-split into two smaller steps so
  that every rank still gets a sample in each. Only impossible when fewer samples remain than
  ranks, or with ``batch_size == 1``: then construction fails with a clear error.
- ``pad``: the last step is full; positions past the end wrap to the start of the epoch order.
- ``drop``: the last ``T`` positions are skipped this epoch (a different set every epoch).
- ``uneven`` (evaluation): every sample once, no padding, any batch size and number of ranks
  (batch size 1 on 8 ranks included). The last step gives full batches to the first ranks,
  the remainder to the next one, nothing to the rest: ranks may get one batch fewer.

In the other modes every rank gets the same number of batches, so DDP collectives never hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import InputError

Span = tuple[int, int]  # [start, stop) positions in the epoch order; stop may exceed total (pad)


def _tail_exact(base: int, full: int, rest: int, step: int, world_size: int) -> list[Span]:
    if rest >= world_size:
        return [(base + full * step, base + full * step + rest)]
    if full >= 1 and step + rest >= 2 * world_size:
        start, both = base + (full - 1) * step, step + rest
        cut = start + both - both // 2
        return [(start, cut), (cut, start + both)]
    raise InputError(
        f"tail='exact' cannot give each of {world_size} ranks a sample in the last step(s): {rest} sample(s) "
        f"remain after {full} full step(s) of {step}; use tail='pad' or tail='drop', or another batch size"
    )


def _tail_pad(base: int, full: int, rest: int, step: int, world_size: int) -> list[Span]:
    return [(base + full * step, base + (full + 1) * step)]


def _tail_drop(base: int, full: int, rest: int, step: int, world_size: int) -> list[Span]:
    return []


def _tail_uneven(base: int, full: int, rest: int, step: int, world_size: int) -> list[Span]:
    return [(base + full * step, base + full * step + rest)]


# tail mode → the spans replacing the last steps; ``_tail_exact`` may replace the last full step too
TAILS: dict[str, Callable[[int, int, int, int, int], list[Span]]] = {
    "exact": _tail_exact,
    "pad": _tail_pad,
    "drop": _tail_drop,
    "uneven": _tail_uneven,
}


def check_topology(batch_size: int, world_size: int, rank: int, tail: str) -> None:
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, not {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is not in 0..{world_size - 1} (world size {world_size})")
    if tail not in TAILS:
        raise InputError(f"unknown tail mode {tail!r}; choose one of {sorted(TAILS)}")


def global_steps(total: int, cursor: int, batch_size: int, world_size: int, tail: str) -> list[Span]:
    """The position spans of the remaining global steps of the epoch, in order."""
    check_topology(batch_size, world_size, 0, tail)
    step = batch_size * world_size
    full, rest = divmod(max(0, total - cursor), step)
    tail_spans = TAILS[tail](cursor, full, rest, step, world_size) if rest else []
    regular = full - 1 if tail_spans and tail_spans[0][0] < cursor + full * step else full
    return [(cursor + k * step, cursor + (k + 1) * step) for k in range(regular)] + tail_spans


def split_step(span: Span, world_size: int, rank: int) -> Span:
    """A rank's share of one global step: an even split in rank order."""
    a, b = span
    return a + (b - a) * rank // world_size, a + (b - a) * (rank + 1) // world_size


def fill_step(span: Span, batch_size: int, rank: int) -> Span:
    """A rank's share of a short last step in ``uneven`` mode: whole batches in rank order."""
    a, b = span
    return min(b, a + rank * batch_size), min(b, a + (rank + 1) * batch_size)


def rank_batches(total: int, cursor: int, batch_size: int, world_size: int, rank: int, tail: str) -> list[Span]:
    """The position spans of this rank's batches for the rest of the epoch, in order."""
    check_topology(batch_size, world_size, rank, tail)
    steps = global_steps(total, cursor, batch_size, world_size, tail)
    out = [split_step(s, world_size, rank) for s in steps]
    if tail == "uneven" and steps and steps[-1][1] - steps[-1][0] < batch_size * world_size:
        last = fill_step(steps[-1], batch_size, rank)
        out = out[:-1] + ([last] if last[1] > last[0] else [])
    return out


def worker_batches(spans: list[Span], worker: int, num_workers: int) -> list[tuple[int, Span]]:
    """(rank-local batch number, span) of the batches one loader worker makes."""
    if num_workers < 1 or not 0 <= worker < num_workers:
        raise InputError(f"worker {worker} is not in 0..{num_workers - 1}")
    return [(i, spans[i]) for i in range(worker, len(spans), num_workers)]


def consumed_after(total: int, cursor: int, batch_size: int, world_size: int, tail: str, steps: int) -> int:
    """The cursor after every rank has taken ``steps`` more batches (``total`` once none are left)."""
    if steps <= 0:
        return cursor
    step = batch_size * world_size
    full = max(0, total - cursor) // step
    if steps < full:  # fast path: inside the regular steps
        return cursor + steps * step
    spans = global_steps(total, cursor, batch_size, world_size, tail)
    return spans[steps - 1][1] if steps <= len(spans) else max(total, spans[-1][1] if spans else total)


def is_done(total: int, cursor: int, batch_size: int, world_size: int, tail: str) -> bool:
    """True when no batch is left in this epoch from ``cursor`` on."""
    left = total - cursor
    if left <= 0:
        return True
    return tail == "drop" and left < batch_size * world_size


def check_enough(total: int, batch_size: int, world_size: int, tail: str, name: str) -> None:
    """Refuse an epoch that would yield no batch at all (``drop`` with less than one global step)."""
    if total < 1:
        raise InputError(f"the stream has no samples ({name})")
    if tail == "drop" and total < batch_size * world_size:
        raise InputError(f"{name}: tail='drop' with {total} sample(s) gives no batch: one step takes batch_size x "
                         f"world_size = {batch_size * world_size}; use a smaller batch, tail='pad', or tail='exact'")


def check_tail(total: int, cursor: int, batch_size: int, world_size: int, tail: str) -> None:
    """Fail now, not at the end of the epoch, if the tail mode cannot serve the rest of the epoch."""
    check_topology(batch_size, world_size, 0, tail)
    step = batch_size * world_size
    full, rest = divmod(max(0, total - cursor), step)
    if rest:
        TAILS[tail](cursor, full, rest, step, world_size)


@dataclass(frozen=True)
class NodeMap:
    """Node-major dealing inside each full global step, for node-local reading.

    A full step ``[s, s + step)`` is dealt as usual (rank ``r`` takes the ``r``-th slice), but
    slice position ``s + off`` reads epoch position ``s + n + nodes * j`` where ``n, j =
    divmod(off, step // nodes)``: node ``n`` (ranks ``n * R .. n * R + R - 1``) gets the step's
    positions ``= s + n (mod nodes)``, which an order with node groups (``Shuffle(nodes=...)``)
    fills from one group's shards. It permutes positions within a step only, so after every step
    the consumed positions are still exactly the first ones: the resume cursor is unchanged, on
    any topology. Tail steps that are not full stay contiguous.
    """

    start: int
    step: int
    nodes: int
    regular_end: int

    def __call__(self, p: int) -> int:
        if self.nodes <= 1 or not self.start <= p < self.regular_end:
            return p
        k, off = divmod(p - self.start, self.step)
        n, j = divmod(off, self.step // self.nodes)
        return self.start + k * self.step + n + self.nodes * j


def node_map(total: int, cursor: int, batch_size: int, world_size: int, tail: str, nodes: int) -> NodeMap:
    """The node-major map of a pass starting at ``cursor`` (identity when ``nodes`` <= 1)."""
    step = batch_size * world_size
    if nodes <= 1 or step % nodes:
        return NodeMap(cursor, step, 1, cursor)
    regular = 0
    for a, b in global_steps(total, cursor, batch_size, world_size, tail):
        if b - a != step or a != cursor + regular * step:
            break
        regular += 1
    return NodeMap(cursor, step, nodes, cursor + regular * step)
