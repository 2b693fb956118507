"""``ThreadLoader``: the stream's batches made by threads of the training process.

PIL releases the GIL while it decodes and numpy while it copies, so N threads decode about N
images at once. There are no worker processes, so batches need no shared-memory transfer (on
VMs, faulting in fresh shared pages costs a large fraction of a JPEG decode). Thread ``w`` makes
batches ``w, w + N, ...`` and they are handed out round-robin: exactly the order, partition and
resume cursor of the process-based loader.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

from ..errors import InputError
from .dataset import ShardStream

_END = object()


def _take(q: queue.Queue, producer: Future) -> Any:
    """The next item of one producer; its exception, if it failed, is raised here."""
    while True:
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            if producer.done():
                producer.result()  # re-raises the producer's error
                return q.get_nowait() if not q.empty() else _END


class ThreadLoader:
    """Iterates a ShardStream with ``threads`` producer threads and ``prefetch`` batches queued per thread."""

    def __init__(self, stream: ShardStream, threads: int = 2, prefetch: int = 2) -> None:
        if threads < 1 or prefetch < 1:
            raise InputError(f"threads and prefetch must be >= 1, not {threads} and {prefetch}")
        self.dataset = stream
        self.threads = threads
        self.prefetch = prefetch

    def __len__(self) -> int:
        return len(self.dataset)

    def _produce(self, worker: int, out: queue.Queue, stop: threading.Event) -> None:
        for batch in self.dataset.iter_worker(worker, self.threads):
            while not stop.is_set():
                try:
                    out.put(batch, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(_END)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = self.dataset
        stream._begin_pass()
        stop = threading.Event()
        queues: list[queue.Queue] = [queue.Queue(self.prefetch) for _ in range(self.threads)]
        with ThreadPoolExecutor(self.threads, thread_name_prefix="datakit-stream") as pool:
            producers = [pool.submit(self._produce, w, queues[w], stop) for w in range(self.threads)]
            try:
                active, turn = set(range(self.threads)), 0
                while active:
                    w = turn % self.threads
                    turn += 1
                    if w not in active:
                        continue
                    item = _take(queues[w], producers[w])
                    if item is _END:
                        active.discard(w)
                        continue
                    stream._handed += 1
                    yield item
            finally:
                stop.set()

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
