"""Faults with real processes: a worker killed mid-batch, time limits, crashes, a Redis restart.

Probe tasks (tests/workers/probes.py) stand in for the model tasks so that these workers start in a
second without torch; they run through the same TaskSpec/execute/Celery registration path.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from plipbot.errors import ServiceUnavailableError
from tests.workers.harness import PrivateRedis, WorkerConfig, WorkerProcess, probe_worker
from tests.workers.probes import PROBE_ROUTES, CrashRequest, ProbeResult, RecordRequest, SleepRequest
from workers.app import ROUTES, create_celery_app
from workers.client import CeleryTransport, TaskClient
from workers.contracts import TaskError

pytestmark = pytest.mark.integration

FAST_REDELIVERY = {"visibility_timeout_s": 2, "restore_interval_s": 0.5}


def make_client(config: WorkerConfig, timeout_s: float = 30) -> TaskClient:
    app = create_celery_app(config.settings(), routes={**ROUTES, **PROBE_ROUTES})
    return TaskClient(CeleryTransport(app), default_timeout_s=timeout_s)


def record_all(
    client: TaskClient, pool: ThreadPoolExecutor, redis_url: str, key: str, items: list[str], delay_s: float
) -> list[Future[ProbeResult | TaskError]]:
    return [
        pool.submit(
            client.call,
            "plipbot.test.record",
            RecordRequest(redis_url=redis_url, key=key, item=item, delay_s=delay_s),
            ProbeResult,
        )
        for item in items
    ]


def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture()
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


def test_kill_9_mid_batch_then_restart_loses_no_task(
    shared_config: WorkerConfig, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    shared_config.workers.update(FAST_REDELIVERY)
    key, items = f"{shared_config.key_prefix}record", [f"item-{i}" for i in range(12)]
    store = redis.Redis.from_url(shared_config.broker_url, decode_responses=True)
    log = tmp_path / "worker.log"
    first = probe_worker(shared_config, log, concurrency=3).start()
    workers.append(first)
    first.wait_ready()
    client = make_client(shared_config)
    with ThreadPoolExecutor(len(items)) as pool:
        futures = record_all(client, pool, shared_config.broker_url, key, items, delay_s=0.3)

        def mid_batch() -> bool:  # some finished, others started and not finished
            return store.scard(f"{key}:done") >= 3 and store.hlen(f"{key}:runs") > store.scard(f"{key}:done")

        wait_for(mid_batch, 20, "three tasks to finish while others run")
        first.kill()  # SIGKILL: no warm shutdown, no chance to ack or requeue anything
        assert store.scard(f"{key}:done") < len(items), "the kill must land mid-batch"
        second = probe_worker(shared_config, log, concurrency=3).start()
        workers.append(second)
        results = [f.result(timeout=60) for f in futures]
    assert all(isinstance(r, ProbeResult) for r in results), results
    assert {r.item for r in results} == set(items)
    assert store.smembers(f"{key}:done") == set(items)  # recorded exactly once by key
    runs = {item: int(n) for item, n in store.hgetall(f"{key}:runs").items()}
    assert set(runs) == set(items)
    redelivered = [item for item, n in runs.items() if n > 1]
    assert redelivered, "the tasks in flight at the kill ran again (acks_late + redelivery)"
    client.close()


def test_prefork_child_killed_mid_task_is_requeued(
    shared_config: WorkerConfig, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    shared_config.workers.update(FAST_REDELIVERY)
    key, items = f"{shared_config.key_prefix}prefork", ["a", "b", "c"]
    store = redis.Redis.from_url(shared_config.broker_url, decode_responses=True)
    worker = probe_worker(shared_config, tmp_path / "worker.log", pool="prefork", concurrency=1).start()
    workers.append(worker)
    worker.wait_ready()
    client = make_client(shared_config)
    with ThreadPoolExecutor(len(items)) as pool:
        futures = record_all(client, pool, shared_config.broker_url, key, items, delay_s=0.8)
        wait_for(lambda: store.hlen(f"{key}:pids") >= 1, 20, "the first task to start")
        [(victim, pid)] = store.hgetall(f"{key}:pids").items()
        os.kill(int(pid), signal.SIGKILL)  # the child only; the parent forks a new one
        results = [f.result(timeout=40) for f in futures]
    assert all(isinstance(r, ProbeResult) for r in results), results
    assert store.smembers(f"{key}:done") == set(items)
    assert int(store.hget(f"{key}:runs", victim) or 0) >= 2
    assert "WorkerLostError" in worker.log() or "signal 9" in worker.log()
    client.close()


def test_time_limits_and_crashes_come_back_as_task_errors(
    shared_config: WorkerConfig, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    shared_config.workers.update(soft_time_limit_s=1, time_limit_s=2)
    worker = probe_worker(shared_config, tmp_path / "worker.log", pool="prefork", concurrency=2).start()
    workers.append(worker)
    worker.wait_ready()
    client = make_client(shared_config, timeout_s=20)
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        soft = pool.submit(
            client.call, "plipbot.test.sleep", SleepRequest(seconds=30, cooperative=False), ProbeResult
        )
        hard = pool.submit(
            client.call,
            "plipbot.test.sleep",
            SleepRequest(seconds=30, cooperative=False, ignore_soft_limit=True),
            ProbeResult,
        )
        soft_result, hard_result = soft.result(30), hard.result(30)
    assert isinstance(soft_result, TaskError) and soft_result.code == "timeout", soft_result
    assert isinstance(hard_result, TaskError) and hard_result.code == "timeout", hard_result
    assert time.monotonic() - started < 15
    mismatched = client.call("plipbot.test.crash", SleepRequest(seconds=0), ProbeResult)  # wrong contract
    assert isinstance(mismatched, TaskError) and mismatched.code == "invalid_request", mismatched
    crashed = client.call("plipbot.test.crash", CrashRequest(message="kaboom"), ProbeResult)
    assert isinstance(crashed, TaskError) and crashed.code == "internal", crashed
    assert "kaboom" in worker.log()  # the traceback is in the worker log, under the task id
    assert crashed.task_id and crashed.task_id in worker.log()
    client.close()


def test_redis_restart_with_requests_in_flight(
    private_redis: PrivateRedis, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """Kill -9 Redis under load and start it again (same port, same append-only file).

    Guarantees checked: no caller waits past its time-out; each call ends with its answer or a
    clear error; an answered task really ran; a task that did not run is one whose caller got an
    error (never an answer-less success); and once Redis is back, work is served again.
    """
    timeout_s = 15.0
    config = WorkerConfig(private_redis.url, "", tmp_path / "data", workers={**FAST_REDELIVERY})
    key, items = "restart", [f"item-{i}" for i in range(8)]
    store = redis.Redis.from_url(private_redis.url, decode_responses=True, socket_connect_timeout=1)
    log = tmp_path / "worker.log"
    worker = probe_worker(config, log, concurrency=2).start()
    workers.append(worker)
    worker.wait_ready()
    client = make_client(config, timeout_s=timeout_s)
    outcomes: dict[str, object] = {}
    with ThreadPoolExecutor(len(items)) as pool:
        futures = record_all(client, pool, private_redis.url, key, items, delay_s=0.3)
        wait_for(lambda: store.scard(f"{key}:done") >= 1, 20, "the first task to finish")
        private_redis.kill()
        time.sleep(1.0)
        private_redis.start()
        started = time.monotonic()
        for item, future in zip(items, futures, strict=True):
            try:
                outcomes[item] = future.result(timeout=timeout_s + 10)
            except ServiceUnavailableError as err:
                outcomes[item] = err
        waited = time.monotonic() - started
    assert waited < timeout_s + 5, "a caller waited past its time-out"
    for outcome in outcomes.values():
        assert isinstance(outcome, ProbeResult | TaskError | ServiceUnavailableError), outcome
    # A worker that lost Redis either reconnects by itself or (Celery's "Unrecoverable error" path)
    # stops and is restarted by its supervisor; act as that supervisor here.
    if "Unrecoverable error" in worker.log():
        assert worker.process is not None
        assert worker.process.wait(20) != 0, "a worker that gave up must exit non-zero"
        worker = probe_worker(config, log, concurrency=2).start()
        workers.append(worker)
    fresh = client.call(
        "plipbot.test.record",
        RecordRequest(redis_url=private_redis.url, key=key, item="after-restart"),
        ProbeResult,
        timeout_s=30,
    )
    assert isinstance(fresh, ProbeResult), fresh
    time.sleep(2 * FAST_REDELIVERY["visibility_timeout_s"])  # let redelivered messages run
    done = store.smembers(f"{key}:done")
    for item, outcome in outcomes.items():
        if isinstance(outcome, ProbeResult):
            assert item in done, f"{item} was answered but never ran"
    lost = [item for item in items if item not in done]
    assert all(not isinstance(outcomes[item], ProbeResult) for item in lost)
    assert len(lost) <= 2, f"more than the messages in flight at the crash were lost: {lost}"
    print(f"answered {sum(isinstance(o, ProbeResult) for o in outcomes.values())}/{len(items)}; lost {lost}")
    client.close()
