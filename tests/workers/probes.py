"""Probe tasks for fault tests, registered next to the real ones through the same TaskSpec machinery.

They never touch the model (a probe worker starts in about a second, without torch):

- `plipbot.test.record`: idempotent; sleeps, then records its item into a Redis set (exactly once
  by key, however often it runs) and counts executions, so a test can prove nothing was lost.
- `plipbot.test.sleep`: not idempotent; sleeps cooperatively (checkpoints) or blocking, optionally
  ignoring the soft time limit, to exercise both time limits.
- `plipbot.test.crash`: raises, as a bug would.

Run as a module to start a worker with these tasks: `python -m tests.workers.probes --pool threads`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Literal

import redis

from workers.contracts import Contract, Result
from workers.runtime import TaskContext, TaskRegistry

PROBES = TaskRegistry()
PROBE_ROUTES: dict[str, Literal["gpu", "ingest"]] = {
    "plipbot.test.record": "gpu",
    "plipbot.test.sleep": "gpu",
    "plipbot.test.crash": "ingest",
}


class RecordRequest(Contract):
    redis_url: str
    key: str  # prefix of the set `<key>:done`, hashes `<key>:runs` and `<key>:pids`
    item: str
    delay_s: float = 0.0


class SleepRequest(Contract):
    seconds: float
    cooperative: bool = True
    ignore_soft_limit: bool = False


class CrashRequest(Contract):
    message: str = "boom"


class ProbeResult(Result):
    kind: Literal["probe"] = "probe"
    item: str = ""
    pid: int


@PROBES.task("plipbot.test.record", request=RecordRequest, result=ProbeResult, idempotent=True)
def record(request: RecordRequest, context: TaskContext) -> ProbeResult:
    client = redis.Redis.from_url(request.redis_url, socket_connect_timeout=2, socket_timeout=5)
    client.hset(f"{request.key}:pids", request.item, os.getpid())
    client.hincrby(f"{request.key}:runs", request.item, 1)
    deadline = time.monotonic() + request.delay_s
    while time.monotonic() < deadline:
        context.checkpoint()
        time.sleep(0.02)
    client.sadd(f"{request.key}:done", request.item)
    return ProbeResult(item=request.item, pid=os.getpid())


@PROBES.task("plipbot.test.sleep", request=SleepRequest, result=ProbeResult, idempotent=False)
def sleep(request: SleepRequest, context: TaskContext) -> ProbeResult:
    if request.cooperative:
        deadline = time.monotonic() + request.seconds
        while time.monotonic() < deadline:
            context.checkpoint()
            time.sleep(0.02)
    elif request.ignore_soft_limit:
        from celery.exceptions import SoftTimeLimitExceeded

        try:
            time.sleep(request.seconds)
        except SoftTimeLimitExceeded:
            time.sleep(request.seconds)  # misbehave: only the hard limit stops this
    else:
        time.sleep(request.seconds)
    return ProbeResult(pid=os.getpid())


@PROBES.task("plipbot.test.crash", request=CrashRequest, result=ProbeResult, idempotent=False)
def crash(request: CrashRequest, context: TaskContext) -> ProbeResult:
    raise RuntimeError(request.message)


def main() -> int:
    """Start a worker serving the real tasks plus the probes, configured from PLIPBOT_* variables."""
    from plipbot.cli_worker import configure_pool, run_celery_worker
    from plipbot.composition import Container
    from plipbot.settings import load_settings
    from workers.app import ROUTES, queue_names
    from workers.runtime import merged
    from workers.tasks import TASKS, create_worker_app

    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    settings = load_settings()
    container = Container(settings)
    app, _ = create_worker_app(container, specs=merged(TASKS, PROBES), routes={**ROUTES, **PROBE_ROUTES})
    configure_pool(app, args.pool)
    queues = sorted(set(queue_names(settings).values()))
    return run_celery_worker(app, queues, pool=args.pool, concurrency=args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
