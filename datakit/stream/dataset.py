"""``ShardStream``: a PyTorch IterableDataset of decoded batches with exact epochs and elastic resume.

The stream yields whole batches (so the batch→worker mapping is fixed and consumption is a prefix
of the epoch order, see ``partition``). The cursor (seed, epoch, first unconsumed position) lives
in a small shared-memory tensor owned by the main process; workers only read it, so
``set_epoch`` and ``load_state_dict`` reach persistent workers too.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import CorruptShardError, InputError
from ..shards.index import SplitIndex, load_index
from ..shards.members import decode_sample
from .budget import check_in_flight
from .checks import check_local_shards
from .collate import BatchBuilder
from .epoch import Draws, EpochPlan, SinglePlan, Transform, locate
from .order import Shuffle
from .partition import check_enough, check_tail, check_topology, consumed_after, node_map, rank_batches, worker_batches
from .reader import ReadOptions, ShardPool
from .threads import ThreadLoader
from .transforms import Compose

STATE_FORMAT = "datakit.stream/1"
_AUG_TAG = 0xA06  # transform seeds: (tag, seed, epoch, position)
LOOKAHEAD = 1  # this worker's next batches whose shards are downloaded in the background
PREFETCH = 2  # batches a loader worker or thread makes ahead of the training loop

IMAGE_NAME = {"jpg": "image"}  # the loader hands the decoded jpg member out as "image"


@dataclass(frozen=True)
class StreamOptions:
    """``tail``: exact | pad | drop | uneven (see ``partition``); ``members``: stored members to decode (None: all).

    ``ranks_per_node`` (default: ``$LOCAL_WORLD_SIZE``, as torchrun sets it) tells the node-major
    partition which ranks share a node; it is used only with ``Shuffle(nodes=...)``.
    """

    tail: str = "exact"
    shuffle: Shuffle = field(default_factory=Shuffle)
    read: ReadOptions = field(default_factory=ReadOptions)
    members: tuple[str, ...] | None = None
    ranks_per_node: int | None = None

    @classmethod
    def evaluation(cls, read: ReadOptions = ReadOptions(), members: tuple[str, ...] | None = None) -> "StreamOptions":
        """Index order, every sample exactly once on any topology, no padding (ranks may get a batch fewer)."""
        return cls(tail="uneven", shuffle=Shuffle("none"), read=read, members=members)


def resolve_topology(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values win; then an initialised torch.distributed group; then RANK / WORLD_SIZE."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        found = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        try:
            found = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        except ValueError:
            got = f"{os.environ.get('RANK')!r}/{os.environ.get('WORLD_SIZE')!r}"
            raise InputError(f"RANK/WORLD_SIZE must be integers, got {got}") from None
    return (found[0] if rank is None else rank), (found[1] if world_size is None else world_size)


def _plan_of(source: SplitIndex | str | Path | EpochPlan, transform: Transform | None, options: StreamOptions) -> EpochPlan:
    if isinstance(source, (str, Path)):
        source = load_index(source, options.read.storage_options, options.read.policy)
    if isinstance(source, SplitIndex):
        options.read.check(source)
        return SinglePlan(source, options.shuffle, transform, options.read)
    if transform is not None:
        raise InputError("a plan carries its own transforms (MixSource.transform / MixPlan(transform=...))")
    return source


class ShardStream(IterableDataset):
    """Batches of decoded samples of one split (or a ``MixPlan``) for this rank.

    Iterate it through ``StreamLoader``/``loader()`` (or directly, in-process) so that handed-out
    batches are counted for ``state_dict()``; a plain DataLoader with workers cannot count them.
    """

    def __init__(self, source: SplitIndex | str | Path | EpochPlan, batch_size: int, *, seed: int = 0,
                 epoch: int = 0, rank: int | None = None, world_size: int | None = None,
                 transform: Transform | None = None, options: StreamOptions = StreamOptions()) -> None:
        self.rank, self.world_size = resolve_topology(rank, world_size)
        check_topology(batch_size, self.world_size, self.rank, options.tail)
        self.plan: EpochPlan = _plan_of(source, transform, options)
        self.batch_size = batch_size
        self.options = options
        self.plan.check(batch_size, options.tail)
        names = ", ".join(f"{ix.spec.dataset}/{ix.spec.split}" for ix in self.plan.indexes)
        check_enough(self.plan.length, batch_size, self.world_size, options.tail, names)
        for index in self.plan.indexes:
            options.read.check(index)
            check_local_shards(index, options.read.on_corrupt == "skip")
        self._cursor = torch.zeros(3, dtype=torch.int64).share_memory_()
        self._handed = 0
        self._set_cursor(seed, epoch, 0)
        self._local = threading.local()  # per-thread open shards: a cache, never state
        self._ends = [space.offsets[1:].tolist() for space in self.plan.spaces]
        self._warned: set[tuple[int, int]] = set()
        self._keep = frozenset(options.members) if options.members is not None else None
        self.nodes = self._physical_nodes() if any(sh.nodes for sh in self.plan.shuffles) else 1

    def _physical_nodes(self) -> int:
        """Nodes of this job for the node-major partition (1 when ranks do not divide evenly)."""
        per = self.options.ranks_per_node
        if per is None:
            try:
                per = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
            except ValueError:
                per = self.world_size
        if per < 1 or self.world_size % per:
            warnings.warn(f"{self.world_size} ranks do not split into nodes of {per}: node-local reading is off",
                          RuntimeWarning, stacklevel=3)
            return 1
        return self.world_size // per

    def check_in_flight(self, workers: int, prefetch: int = PREFETCH) -> None:
        """Warn when remote shards for the batches in flight overflow the budget: a rank's workers
        run ``workers x (prefetch + LOOKAHEAD)`` batches ahead, each a global step further on."""
        samples = self.batch_size * self.world_size * max(1, workers) * (prefetch + LOOKAHEAD)
        for index, space, shuffle in zip(self.plan.indexes, self.plan.spaces, self.plan.shuffles):
            check_in_flight(index, shuffle, space, self.options.read, samples)

    # -- cursor -----------------------------------------------------------------------------
    def _spans(self, start: int) -> list[tuple[int, int]]:
        return rank_batches(self.plan.length, start, self.batch_size, self.world_size, self.rank, self.options.tail)

    def _position(self) -> tuple[int, int, int]:
        """(seed, epoch, consumed) including the batches handed out since the pass began."""
        seed, epoch, start = (int(v) for v in self._cursor.tolist())
        if self._handed and self._handed >= len(self._spans(start)):
            return seed, epoch + 1, 0  # this rank's pass is complete (ranks may differ in 'uneven' mode)
        n, b, w, tail = self.plan.length, self.batch_size, self.world_size, self.options.tail
        consumed = consumed_after(n, start, b, w, tail, self._handed)
        if consumed >= n:
            return seed, epoch + 1, 0
        return seed, epoch, consumed

    def _set_cursor(self, seed: int, epoch: int, consumed: int) -> None:
        if seed < 0 or epoch < 0:
            raise InputError(f"seed and epoch must be >= 0, not {seed} and {epoch}")
        check_tail(self.plan.length, consumed, self.batch_size, self.world_size, self.options.tail)
        self._cursor.copy_(torch.tensor([seed, epoch, consumed], dtype=torch.int64))
        self._handed = 0

    def begin_pass(self) -> None:
        """Commit the handed-out batches: a new pass continues where the last one stopped (a pass
        that starts where no batch is left moves on to the next epoch)."""
        seed, epoch, consumed = self._position()
        if not self._spans(consumed):
            seed, epoch, consumed = seed, epoch + 1, 0
        self._set_cursor(seed, epoch, consumed)

    def count_batch(self) -> None:
        """Record one batch handed to the training loop (what ``state_dict`` counts)."""
        self._handed += 1

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning, unless that epoch is already partly consumed (a resume)."""
        seed, current, consumed = self._position()
        if epoch != current or consumed == 0:
            self._set_cursor(seed, epoch, 0)

    @property
    def epoch(self) -> int:
        return self._position()[1]

    def state_dict(self) -> dict[str, Any]:
        """A global cursor: resuming it yields exactly the samples not yet handed out, on any topology."""
        seed, epoch, consumed = self._position()
        return {"format": STATE_FORMAT, **self.plan.identity(), "seed": seed, "epoch": epoch,
                "consumed": consumed, "batch_size": self.batch_size, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            kind = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise InputError(f"not a datakit stream state (format {kind!r})")
        mine = self.plan.identity()
        if state.get("dataset") != mine["dataset"]:
            raise InputError(f"resume state belongs to another dataset: {state.get('name')} ({state.get('dataset')}), "
                             f"this stream reads {mine['name']} ({mine['dataset']})")
        for key in mine:
            if state.get(key) != mine[key]:
                raise InputError(f"resume state has {key}={state.get(key)!r} but this stream has {mine[key]!r}; "
                                 "the order would differ")
        consumed = int(state["consumed"])
        if not 0 <= consumed <= self.plan.length:
            raise InputError(f"resume state consumed={consumed} is outside 0..{self.plan.length}")
        self._set_cursor(int(state["seed"]), int(state["epoch"]), consumed)

    def __len__(self) -> int:
        """Batches this rank will yield in the next pass."""
        _, _, consumed = self._position()
        return len(self._spans(consumed))

    # -- iteration --------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is not None:
            return self.iter_worker(info.id, info.num_workers)
        return self._counted()

    def _counted(self) -> Iterator[dict[str, Any]]:
        self.begin_pass()
        for batch in self.iter_worker(0, 1):
            self.count_batch()
            yield batch

    def iter_worker(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        """The batches that loader worker ``worker`` of ``num_workers`` makes, from the current cursor."""
        seed, epoch, start = (int(v) for v in self._cursor.tolist())
        draws = self.plan.draws(seed, epoch)
        where = node_map(self.plan.length, start, self.batch_size, self.world_size, self.options.tail, self.nodes)
        mine = worker_batches(self._spans(start), worker, num_workers)
        try:
            for j, (_, (begin, end)) in enumerate(mine):
                self._read_ahead(draws, [where(p) for _, (a, b) in mine[j : j + 1 + LOOKAHEAD] for p in range(a, b)])
                batch = BatchBuilder(end - begin)
                for p in range(begin, end):
                    batch.add(self._sample(draws, seed, epoch, where(p)))
                yield batch.result()
        finally:  # unpin this worker's cached remote shards, so other processes may evict them
            for pool in getattr(self._local, "pools", None) or []:
                if pool.disk is not None:
                    pool.close()

    def _read_ahead(self, draws: Draws, positions: list[int]) -> None:
        """Remote shards through the disk cache: keep open (pinned) only the shards of the current
        and next batches (``positions``), and download the next batches' shards in the background."""
        pools = self._get_pools()
        if all(p.disk is None for p in pools):
            return
        wanted: list[dict[int, None]] = [{} for _ in pools]
        for p in positions:
            src, sid = draws.at(p % self.plan.length)
            wanted[src][locate(self.plan.spaces[src], self._ends[src], sid)[0]] = None
        for pool, shards in zip(pools, wanted):
            if pool.disk is not None:
                pool.release_except(set(shards))
                pool.prefetch(list(shards))

    def _sample(self, draws: Draws, seed: int, epoch: int, position: int) -> dict[str, Any]:
        """The sample at an epoch position (positions past the end wrap: tail='pad', flagged ``__pad__``).

        With ``on_corrupt='skip'`` an unreadable sample is replaced by the next readable one of
        the epoch order, so batch shapes and counts (and DDP) are unaffected.
        """
        pools = self._get_pools()
        skip = self.options.read.on_corrupt == "skip"
        q = position % self.plan.length
        for _ in range(self.plan.length):
            src, sid = draws.at(q)
            shard, i = locate(self.plan.spaces[src], self._ends[src], sid)
            if skip and pools[src].is_bad(shard):
                q = (q + 1) % self.plan.length
                continue
            try:
                sample = self._load(pools[src], src, shard, i, sid, (seed, epoch, position))
            except CorruptShardError as err:
                if not skip:
                    raise
                if (src, shard) not in self._warned:
                    self._warned.add((src, shard))
                    warnings.warn(f"skipping unreadable data, substituting the next samples: {err}", RuntimeWarning, stacklevel=2)
                q = (q + 1) % self.plan.length
                continue
            if self.options.tail == "pad":
                sample["__pad__"] = position >= self.plan.length
            return sample
        raise CorruptShardError(f"no readable sample left in the stream (position {position})")

    def _load(self, pool: ShardPool, src: int, shard: int, i: int, sid: int, when: tuple[int, int, int]) -> dict[str, Any]:
        sample = decode_sample(pool.read(shard, i), pool.label(shard), self._keep, IMAGE_NAME)
        sample["__index__"] = sid
        sample["__source__"] = src
        transform = self.plan.transforms[src]
        if transform is not None:
            sample = transform(sample, np.random.default_rng([_AUG_TAG, *when]))
        return sample

    def _get_pools(self) -> list[ShardPool]:
        """This thread's open shards: file handles are never shared between loader threads."""
        pools = getattr(self._local, "pools", None)
        if pools is None:
            pools = self._local.pools = [ShardPool(index, self.options.read, keep)
                                         for index, keep in zip(self.plan.indexes, self.plan.keeps)]
        return pools

    def close_shards(self) -> None:
        """Close this thread's open shards (unpinning them in the disk cache)."""
        for pool in getattr(self._local, "pools", None) or []:
            pool.close()
        self._local.pools = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_local"]
        state["_warned"] = set()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


def _identity(batch: Any) -> Any:
    return batch


class StreamLoader(DataLoader):
    """A DataLoader over a ShardStream that counts handed-out batches, so its state can be saved mid-epoch."""

    def __init__(self, stream: ShardStream, num_workers: int = 2, **kwargs: Any) -> None:
        if not isinstance(stream, ShardStream):
            raise InputError("StreamLoader needs a ShardStream")
        super().__init__(stream, batch_size=None, collate_fn=_identity, num_workers=num_workers, **kwargs)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        stream: ShardStream = self.dataset  # type: ignore[assignment]
        stream.begin_pass()
        batches = super().__iter__()
        if self.num_workers == 0:  # the stream counts in-process iteration itself
            yield from batches
            return
        try:
            for batch in batches:
                stream.count_batch()
                yield batch
        finally:  # an early break: stop the workers now, not when the garbage collector gets to it
            if not self.persistent_workers:
                shutdown = getattr(batches, "_shutdown_workers", None)
                if shutdown is not None:
                    shutdown()

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()  # type: ignore[attr-defined]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)  # type: ignore[attr-defined]


def _datakit_only(transform: Any) -> bool:
    """True for None and datakit's transforms (a Compose only of them): PIL and numpy work that
    releases the GIL. Any other callable may hold the GIL."""
    if transform is None:
        return True
    inner = getattr(transform, "transforms", None)
    if isinstance(transform, Compose) and inner is not None:
        return all(_datakit_only(t) for t in inner)
    return type(transform).__module__.startswith("datakit.")


def _threads_are_safe(stream: ShardStream) -> bool:
    """Threads are the default when every transform is one of datakit's; an arbitrary user
    transform may hold the GIL and starve the training loop, so it gets worker processes."""
    return all(_datakit_only(t) for t in stream.plan.transforms)


def loader(source: SplitIndex | str | Path | EpochPlan, batch_size: int, *, seed: int = 0, epoch: int = 0,  # noqa: PLR0913 - public API
           rank: int | None = None, world_size: int | None = None, num_workers: int | None = None,
           threads: int | None = None, transform: Transform | None = None, options: StreamOptions = StreamOptions(),
           **dataloader_kwargs: Any) -> StreamLoader | ThreadLoader:
    """A ready loader: ``for batch in loader(...)`` under torchrun, with state_dict()/set_epoch().

    ``threads=N`` makes batches on N threads of this process (``ThreadLoader``: no worker
    processes, no shared-memory transfer); ``num_workers=N`` on N worker processes through a
    DataLoader (``StreamLoader``). Both give the same batches. With neither, the default is 2
    threads when that is safe (no DataLoader options and only datakit transforms), else 2 processes.
    """
    stream = ShardStream(source, batch_size, seed=seed, epoch=epoch, rank=rank, world_size=world_size,
                         transform=transform, options=options)
    if threads is None and num_workers is None and not dataloader_kwargs and _threads_are_safe(stream):
        threads = 2
    if threads:
        if num_workers or dataloader_kwargs:
            raise InputError("threads replaces worker processes: give neither num_workers nor DataLoader options with it")
        stream.check_in_flight(threads)
        return ThreadLoader(stream, threads, PREFETCH)
    workers = 2 if num_workers is None else num_workers
    stream.check_in_flight(workers, int(dataloader_kwargs.get("prefetch_factor") or PREFETCH))
    return StreamLoader(stream, num_workers=workers, **dataloader_kwargs)
