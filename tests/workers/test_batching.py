"""Micro-batching with real threads: who waits, for how long, and what ends up in one batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from workers.batching import MicroBatcher


class Squarer:
    """A process function that records the batches it saw (a plain function, not a mock)."""

    def __init__(self, delay_s: float = 0.0, poison: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.poison = poison

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if self.poison is not None and self.poison in items:
            raise ValueError(f"cannot square {self.poison}")
        time.sleep(self.delay_s)
        return [i * i for i in items]


@pytest.fixture()
def squarer() -> Squarer:
    return Squarer()


@pytest.fixture()
def batcher(squarer: Squarer) -> Iterator[MicroBatcher[int, int]]:
    batcher = MicroBatcher(squarer, max_batch=32, window_s=2.0)
    yield batcher
    batcher.close()


def run_threads(n: int, target) -> list:  # type: ignore[no-untyped-def]
    results: list = [None] * n
    errors: list[BaseException] = []

    def wrap(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors
    return results


def test_announced_concurrent_callers_share_one_batch_without_waiting_out_the_window(
    batcher: MicroBatcher[int, int], squarer: Squarer
) -> None:
    n = 16
    sessions = [batcher.session().__enter__() for _ in range(n)]  # all announced before anyone submits
    barrier = threading.Barrier(n)

    def call(i: int) -> tuple[int, int]:
        barrier.wait()
        time.sleep(0.001 * (i % 4))  # staggered "downloads"
        [out] = sessions[i].run([i], timeout_s=5)
        return out.value, out.batch_size

    started = time.monotonic()
    results = run_threads(n, call)
    elapsed = time.monotonic() - started
    assert [value for value, _ in results] == [i * i for i in range(n)]
    assert len(squarer.batches) == 1 and sorted(squarer.batches[0]) == list(range(n))
    assert {size for _, size in results} == {n}
    assert elapsed < 1.0, "the batch ran once everyone announced had submitted, not after the 2 s window"


def test_a_lone_caller_is_not_taxed_by_the_window(batcher: MicroBatcher[int, int]) -> None:
    started = time.monotonic()
    with batcher.session() as session:
        [out] = session.run([7], timeout_s=5)
    assert out.value == 49 and out.batch_size == 1
    assert time.monotonic() - started < 0.5


def test_the_window_bounds_the_wait_for_an_announced_caller_that_never_submits(squarer: Squarer) -> None:
    batcher = MicroBatcher(squarer, max_batch=32, window_s=0.2)
    try:
        with batcher.session():  # announced, busy elsewhere, never submits
            started = time.monotonic()
            [out] = batcher.run([3], timeout_s=5)
            waited = time.monotonic() - started
        assert out.value == 9
        assert 0.15 < waited < 1.5
    finally:
        batcher.close()


def test_batches_never_exceed_max_batch(squarer: Squarer) -> None:
    batcher = MicroBatcher(squarer, max_batch=4, window_s=0.05)
    try:
        outs = batcher.run(list(range(10)), timeout_s=5)
    finally:
        batcher.close()
    assert [o.value for o in outs] == [i * i for i in range(10)]
    assert all(len(b) <= 4 for b in squarer.batches)
    assert sum(len(b) for b in squarer.batches) == 10


def test_items_queued_while_the_model_is_busy_batch_together_even_unannounced() -> None:
    slow = Squarer(delay_s=0.2)
    batcher = MicroBatcher(slow, max_batch=32, window_s=0.0)
    try:
        first = batcher.submit(100)
        time.sleep(0.05)  # the first batch is now "on the GPU"
        results = run_threads(8, lambda i: batcher.run([i], timeout_s=5)[0])
        assert first.result(5).batch_size == 1
    finally:
        batcher.close()
    assert [r.value for r in results] == [i * i for i in range(8)]
    assert len(slow.batches) == 2 and sorted(slow.batches[1]) == list(range(8))


def test_a_poisonous_item_fails_only_its_own_caller() -> None:
    poisoned = Squarer(poison=3)
    batcher = MicroBatcher(poisoned, max_batch=32, window_s=0.0)
    futures = [batcher.submit(i) for i in range(6)]
    try:
        for i, future in enumerate(futures):
            if i == 3:
                with pytest.raises(ValueError, match="cannot square 3"):
                    future.result(5)
            else:
                assert future.result(5).value == i * i
    finally:
        batcher.close()


def test_a_stuck_model_times_out_the_caller_instead_of_hanging() -> None:
    stuck = Squarer(delay_s=1.0)
    batcher = MicroBatcher(stuck, max_batch=4, window_s=0.0)
    try:
        with pytest.raises(TimeoutError):
            batcher.run([1], timeout_s=0.1)
    finally:
        batcher.close()


def test_closed_batcher_refuses_work(squarer: Squarer) -> None:
    batcher = MicroBatcher(squarer)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(1)
