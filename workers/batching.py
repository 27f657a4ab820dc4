"""Micro-batching: images from concurrent requests share one forward pass.

A GPU encodes 32 images in little more time than one, so a worker that runs several tasks at once
(`--pool threads`, or the embedded worker's thread pool) hands every image to one collector thread,
which encodes whatever has arrived as a single batch. That thread is also the only one that runs
the image tower, so the model is never entered by two batches at once.

How long to wait for company is the whole design. Waiting a fixed window would tax a lone request
for nothing, so callers *announce* themselves (`session()`) when their task starts, before the slow
part (download, decode). The collector waits, at most `window_s`, only while some announced caller
has not yet submitted; once everyone known has submitted (or `max_batch` items are waiting) the
batch runs at once. Items submitted without a session still batch with whatever queued up while the
previous batch was on the GPU, they just never make the collector wait.

One process, threads only: after a fork (prefork pool) build a new batcher in the child, since the
collector thread does not survive the fork.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Batched(Generic[R]):
    """One item's output and how it was produced."""

    value: R
    batch_size: int
    process_ms: float
    batch_id: int = 0  # which batch (per batcher, counting from 1), to total time over distinct batches


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: Future[Batched[R]]


class BatchSession(Generic[T, R]):
    """A caller that has announced it will submit soon; see the module docstring."""

    def __init__(self, batcher: MicroBatcher[T, R]) -> None:
        self._batcher = batcher
        self._announced = False

    def __enter__(self) -> BatchSession[T, R]:
        self._batcher._announce()
        self._announced = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._announced:
            self._announced = False
            self._batcher._withdraw()

    def run(self, items: Sequence[T], timeout_s: float | None = None) -> list[Batched[R]]:
        """Submit `items` (ending the announcement) and wait for their outputs, in order."""
        futures = self._batcher._submit_many(items, ends_announcement=self._announced)
        self._announced = False
        return _wait_all(futures, timeout_s)


def _wait_all(futures: list[Future[Batched[R]]], timeout_s: float | None) -> list[Batched[R]]:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    out = []
    for future in futures:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        out.append(future.result(timeout=remaining))  # TimeoutError when the collector is stuck
    return out


class MicroBatcher(Generic[T, R]):
    """Collects items from many threads and runs `process(items) -> outputs` on batches of them.

    `process` must return one output per item, in order. If it raises on a batch of several items,
    each item is retried alone, so one poisonous input fails only its own caller.
    """

    def __init__(
        self,
        process: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        window_s: float = 0.01,
        name: str = "micro-batcher",
    ) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError(f"max_batch must be >= 1 and window_s >= 0, got {max_batch} and {window_s}")
        self._process = process
        self.max_batch = max_batch
        self.window_s = window_s
        self._name = name
        self._cond = threading.Condition()
        self._pending: deque[_Pending[T, R]] = deque()
        self._preparing = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._batches_run = 0
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # recent batch sizes, for tests and stats

    # ----------------------------------------------------------------------------- callers

    def session(self) -> BatchSession[T, R]:
        """Announce a coming submission: `with batcher.session() as s: ...; s.run(items)`."""
        return BatchSession(self)

    def submit(self, item: T) -> Future[Batched[R]]:
        """Queue one item without announcing it first."""
        return self._submit_many([item], ends_announcement=False)[0]

    def run(self, items: Sequence[T], timeout_s: float | None = None) -> list[Batched[R]]:
        """Queue `items` and wait for their outputs, in order."""
        return _wait_all(self._submit_many(items, ends_announcement=False), timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued, then stop the collector thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _announce(self) -> None:
        with self._cond:
            self._preparing += 1

    def _withdraw(self) -> None:
        with self._cond:
            self._preparing -= 1
            self._cond.notify_all()

    def _submit_many(self, items: Sequence[T], *, ends_announcement: bool) -> list[Future[Batched[R]]]:
        futures: list[Future[Batched[R]]] = [Future() for _ in items]
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._pending.extend(_Pending(item, future) for item, future in zip(items, futures, strict=True))
            if ends_announcement:
                self._preparing -= 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return futures

    # ----------------------------------------------------------------------------- collector

    def _next_batch(self) -> list[_Pending[T, R]] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None  # closed and drained
            deadline = time.monotonic() + self.window_s
            while len(self._pending) < self.max_batch and self._preparing > 0 and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            size = min(self.max_batch, len(self._pending))
            return [self._pending.popleft() for _ in range(size)]

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self.batch_sizes.append(len(batch))
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Pending[T, R]]) -> None:
        started = time.perf_counter()
        try:
            outputs = list(self._process([p.item for p in batch]))
            if len(outputs) != len(batch):
                raise RuntimeError(f"process returned {len(outputs)} outputs for {len(batch)} items")
        except Exception as err:
            if len(batch) == 1:
                batch[0].future.set_exception(err)
                return
            reason = type(err).__name__
            log.warning("%s: batch of %d failed (%s); retrying one by one", self._name, len(batch), reason)
            for pending in batch:
                self._run_batch([pending])
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._batches_run += 1
        for pending, output in zip(batch, outputs, strict=True):
            pending.future.set_result(Batched(output, len(batch), elapsed_ms, self._batches_run))
