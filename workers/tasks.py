"""Every task the workers serve (`TASKS`), and their registration on a Celery app.

The tasks live in `model_tasks` (suggest, embeddings) and `case_tasks` (answer, search, ingest_post,
withdraw); this module only merges their tables, so the arrows point one way: tasks -> task modules ->
steps -> runtime. Adding a task: one request and one result model in the contracts, one function under
its module's registry decorator; its queue goes in `workers.app.ROUTES`.

`create_worker_app` registers every spec on a Celery app, on a base Task class whose per-process
resources (the Container the caller passes in, hence the model) are built on first use, never at
import or fork time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from celery import Task

from workers.case_tasks import CASE_TASKS
from workers.learning_tasks import LEARNING_TASKS
from workers.model_tasks import MODEL_TASKS
from workers.privacy_tasks import PRIVACY_TASKS
from workers.runtime import ResourcesHolder, TaskSpec, execute, merged

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from celery import Celery

    from plipbot.composition import Container
    from workers.app import QueueRole

log = logging.getLogger(__name__)

TASKS = merged(MODEL_TASKS, CASE_TASKS, LEARNING_TASKS, PRIVACY_TASKS)
"""Every task a worker (Celery or embedded) serves."""


def _run_on_celery(self: Any, payload: Any) -> dict[str, Any]:
    """The body of every Celery task: the shared `execute`, plus Celery's own retry and time limit."""
    from celery.exceptions import SoftTimeLimitExceeded

    spec: TaskSpec[Any, Any] = self.spec
    limit = _soft_limit_s(self)
    outcome = execute(
        spec,
        self.resources,
        payload,
        task_id=self.request.id,
        time_limit_s=limit,
        timeout_errors=(SoftTimeLimitExceeded,),
    )
    retries = self.request.retries
    if outcome.get("kind") == "error" and outcome.get("retryable") and retries < spec.max_retries:
        countdown = spec.retry_backoff_s * (2**retries)
        log.info("%s [%s] retries in %.1fs: %s", spec.name, self.request.id, countdown, outcome.get("code"))
        raise self.retry(countdown=countdown, max_retries=spec.max_retries)
    return outcome


def _soft_limit_s(task: Any) -> float:
    """The soft time limit in force: from the message, else the task, else the app configuration."""
    limits = task.request.timelimit or (None, None)
    soft = limits[1] if len(limits) > 1 else None
    return float(soft or task.soft_time_limit or task.app.conf.task_soft_time_limit or 60.0)


class PlipbotTask(Task):
    """Base of every plipbot task: the spec it runs and its process's lazily built resources.

    `resources()` is the cached per-process `WorkerResources` (Container, model, batcher), shared by
    all tasks of the process; building it on first use keeps model loading out of the fork and out
    of `worker_process_init` (which Celery kills after 4 s).
    """

    spec: ClassVar[TaskSpec[Any, Any]]
    resources: ClassVar[ResourcesHolder]
    typing = False

    @property
    def container(self) -> Container:
        """The process's Container (built on first use)."""
        return self.resources().container


def register_tasks(app: Celery, specs: Iterable[TaskSpec[Any, Any]], resources: ResourcesHolder) -> None:
    """Register each spec on `app` under its name, with acks_late exactly when it is idempotent."""
    for spec in specs:
        app.task(
            name=spec.name,
            base=PlipbotTask,
            bind=True,
            shared=False,
            spec=spec,
            resources=resources,
            acks_late=spec.idempotent,
            reject_on_worker_lost=spec.idempotent,
            max_retries=spec.max_retries,
        )(_run_on_celery)


def create_worker_app(
    container: Container,
    *,
    specs: Iterable[TaskSpec[Any, Any]] = TASKS,
    routes: Mapping[str, QueueRole] | None = None,
) -> tuple[Celery, ResourcesHolder]:
    """The worker side: the app from `create_celery_app` with every task registered, serving from
    `container` (the caller's composition root; a forked child gets its own)."""
    from workers.app import ROUTES, create_celery_app

    app = create_celery_app(container.settings, routes=routes if routes is not None else ROUTES)
    resources = ResourcesHolder(container)
    register_tasks(app, specs, resources)
    return app, resources
