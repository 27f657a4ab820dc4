"""Embedded mode: no broker, the tasks run on a thread pool inside the bot's own process.

This is the default for a single-machine install, and it is what keeps the embedded vector store
single-owner: every task runs in the one process that opened it. The code path is the worker's:
the same registered specs and `execute`, the same micro-batcher, and requests and answers go
through a JSON string round trip, so anything that would not survive the broker fails here too.

What a thread pool cannot do is kill a stuck task: time limits are cooperative (checkpoints in the
handlers), and a caller always gets its answer or a timeout TaskError within its own time-out.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from workers.contracts import TaskError
from workers.runtime import ResourcesHolder, TaskSpec, execute
from workers.tasks import TASKS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from plipbot.composition import Container

log = logging.getLogger(__name__)


class EmbeddedWorker:
    """Runs registered task specs on a thread pool, against the caller's own Container."""

    def __init__(
        self, container: Container, *, specs: Iterable[TaskSpec[Any, Any]] = TASKS, threads: int = 4
    ) -> None:
        self.settings = container.settings
        self.resources = ResourcesHolder(container)
        self._specs = {spec.name: spec for spec in specs}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="plipbot-task")

    def warm_up(self) -> float:
        """Load the model, label sets and store before the first task (see WorkerResources.warm_up)."""
        return self.resources().warm_up()

    def submit(self, name: str, message: str) -> Future[str]:
        """Queue task `name` on a JSON `message`; the future holds the JSON answer."""
        spec = self._specs.get(name)
        if spec is None:
            future: Future[str] = Future()
            unknown = TaskError(code="invalid_request", message=f"Unknown task {name!r}.")
            future.set_result(unknown.model_dump_json())
            return future
        return self._pool.submit(self._run, spec, message, str(uuid.uuid4()))

    def _run(self, spec: TaskSpec[Any, Any], message: str, task_id: str) -> str:
        payload = json.loads(message)
        limit = self.settings.workers.soft_time_limit_s
        attempt = 0
        while True:
            outcome = execute(spec, self.resources, payload, task_id=task_id, time_limit_s=limit)
            retry = outcome.get("kind") == "error" and outcome.get("retryable") and attempt < spec.max_retries
            if not retry:
                return json.dumps(outcome)
            time.sleep(spec.retry_backoff_s * (2**attempt))
            attempt += 1

    def close(self) -> None:
        """Stop taking tasks; queued ones are cancelled, running ones finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.resources.close()


class EmbeddedTransport:
    """The `TaskTransport` over an EmbeddedWorker: JSON out, JSON back, same as through a broker."""

    def __init__(self, worker: EmbeddedWorker) -> None:
        self.worker = worker

    def call(self, name: str, payload: dict[str, Any], timeout_s: float) -> Any:
        from workers.client import AnswerTimeoutError

        future = self.worker.submit(name, json.dumps(payload))
        try:
            return json.loads(future.result(timeout=timeout_s))
        except FutureTimeout as err:
            raise AnswerTimeoutError(name) from err

    def warm_up(self) -> float:
        return self.worker.warm_up()

    def close(self) -> None:
        self.worker.close()
