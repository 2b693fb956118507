"""``ThreadLoader``: the stream's batches made by threads of the training process.

PIL releases the GIL while it decodes and numpy while it copies, so N threads decode about N
images at once. There are no worker processes, so batches need no shared-memory transfer (on
VMs, faulting in fresh shared pages costs a large fraction of a JPEG decode). Thread ``w`` makes
batches ``w, w + N, ...`` and they are handed out round-robin: exactly the order, partition and
resume cursor of the process-based loader.

Every queue operation checks a stop flag, so leaving the loop early (``break``, ``next(iter(dl))``,
a fixed number of steps, an exception) stops the threads at once: when the iterator is closed,
or when it is garbage-collected.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator, Protocol

from ..errors import InputError

_END = object()
_POLL_S = 0.05


class BatchSource(Protocol):
    """What a ThreadLoader needs from a stream (``ShardStream`` is one)."""

    def iter_worker(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]: ...

    def begin_pass(self) -> None: ...

    def count_batch(self) -> None: ...

    def close_shards(self) -> None: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _Pass:
    """One pass: producer threads, one bounded queue each, and a stop flag every put and get checks."""

    def __init__(self, stream: BatchSource, threads: int, prefetch: int) -> None:
        self.stream = stream
        self.stop = threading.Event()
        self.queues: list[queue.Queue] = [queue.Queue(prefetch) for _ in range(threads)]
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="datakit-stream")
        self.producers: list[Future] = [self.pool.submit(self._produce, w, threads) for w in range(threads)]

    def _put(self, w: int, item: Any) -> bool:
        """Queue ``item`` unless the pass is stopped first; False when stopped."""
        while not self.stop.is_set():
            try:
                self.queues[w].put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, w: int, threads: int) -> None:
        """Make thread ``w``'s batches; an error is raised to the consumer through the future."""
        try:
            for batch in self.stream.iter_worker(w, threads):
                if not self._put(w, batch):
                    return
            self._put(w, _END)
        finally:
            self.stream.close_shards()

    def take(self, w: int) -> Any:
        """Producer ``w``'s next batch, ``_END`` when it has finished, its error if it failed."""
        while True:
            try:
                return self.queues[w].get(timeout=_POLL_S)
            except queue.Empty:
                if self.stop.is_set():
                    return _END
                if self.producers[w].done():
                    self.producers[w].result()  # re-raises the producer's error
                    return self.queues[w].get_nowait() if not self.queues[w].empty() else _END

    def close(self) -> None:
        """Stop the producers and drain their queues so none stays blocked. Producers finish the
        batch in hand (a stop check on every put) and exit on their own; nothing waits for them."""
        self.stop.set()
        for q in self.queues:
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        self.pool.shutdown(wait=False, cancel_futures=True)

    def __del__(self) -> None:
        self.stop.set()


class _ThreadIter:
    """The iterator of one pass: round-robin over the producers; closing it stops them."""

    def __init__(self, stream: BatchSource, threads: int, prefetch: int) -> None:
        stream.begin_pass()
        self.stream = stream
        self.threads = threads
        self.active = set(range(threads))
        self.turn = 0
        self.run: _Pass | None = _Pass(stream, threads, prefetch)

    def __iter__(self) -> "_ThreadIter":
        return self

    def __next__(self) -> dict[str, Any]:
        run = self.run
        if run is None:
            raise StopIteration
        try:
            while self.active:
                w = self.turn % self.threads
                self.turn += 1
                if w not in self.active:
                    continue
                item = run.take(w)
                if item is _END:
                    self.active.discard(w)
                    continue
                self.stream.count_batch()
                return item
        except BaseException:
            self.close()
            raise
        self.close()
        raise StopIteration

    def close(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.close()

    def __del__(self) -> None:
        run = getattr(self, "run", None)
        if run is not None:
            run.stop.set()  # the daemon threads see it within one poll and exit


class ThreadLoader:
    """Iterates a stream with ``threads`` producer threads and ``prefetch`` batches queued per thread."""

    def __init__(self, stream: BatchSource, threads: int = 2, prefetch: int = 2) -> None:
        if threads < 1 or prefetch < 1:
            raise InputError(f"threads and prefetch must be >= 1, not {threads} and {prefetch}")
        self.dataset = stream
        self.threads = threads
        self.prefetch = prefetch

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> _ThreadIter:
        return _ThreadIter(self.dataset, self.threads, self.prefetch)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
