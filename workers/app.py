"""The Celery app, built from Settings by a function (never at import time).

The same factory serves both sides: the bot builds it to *send* tasks by name (it registers no task
and never imports torch), and `workers.tasks.create_worker_app` builds it and registers the tasks.
Routing lives here, by task name, so both sides agree on which queue a name goes to.

Delivery choices, and why:
- JSON only, both ways: messages are pydantic contracts, never pickles.
- Prefetch multiplier 1: a task can take seconds (a model load, a slow download); a worker must not
  hoard messages another worker could run now.
- `acks_late` is per task (on only for idempotent tasks, see TaskSpec), with
  `task_reject_on_worker_lost`: a worker killed mid-task leaves its messages to be redelivered.
  On Redis, "redelivered" means after `visibility_timeout`, which must exceed the longest task.
- Time limits: soft (the task returns a timeout TaskError) then hard (a prefork child is killed).
- Redis time-outs everywhere, so a dead broker is an error within seconds, not a hang.
- Every message carries placeholders as its `argsrepr`/`kwargsrepr` (what Celery logs and shows in
  events instead of the arguments), whoever publishes it: the bot, or a worker retrying a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from plipbot.errors import ServiceUnavailableError
from plipbot.redaction import REDACTED

if TYPE_CHECKING:
    from celery import Celery

    from plipbot.settings import Settings

QueueRole = Literal["gpu", "ingest"]

#: Which queue each task name goes to. Names without a task yet are reserved for the search and
#: ingest work that follows; search sits with the model work because it is interactive (a person
#: waits) and embeds an image first, while corpus writes may wait behind each other.
ROUTES: Mapping[str, QueueRole] = {
    "plipbot.suggest": "gpu",
    "plipbot.embed_texts": "gpu",
    "plipbot.embed_images": "gpu",
    "plipbot.answer": "gpu",
    "plipbot.search": "gpu",
    "plipbot.ingest_post": "ingest",
    "plipbot.withdraw": "ingest",
    "plipbot.rescope": "ingest",
    "plipbot.forget_messages": "ingest",
    "plipbot.sweep_erasures": "ingest",
    "plipbot.confirm_example": "gpu",  # a moderator waits, and it may embed the image
    "plipbot.learning_test": "gpu",
}


def queue_names(settings: Settings) -> dict[QueueRole, str]:
    """Configured queue name for each role."""
    return {"gpu": settings.workers.gpu_queue, "ingest": settings.workers.ingest_queue}


def _redis_options(settings: Settings) -> dict[str, object]:
    workers = settings.workers
    return {
        "socket_connect_timeout": workers.connect_timeout_s,
        "socket_timeout": max(10.0, workers.connect_timeout_s),
        "socket_keepalive": True,
        "retry_on_timeout": True,
    }


def _hide_arguments(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """`before_task_publish` receiver: a task's arguments are what people typed or posted."""
    if headers is not None:
        headers["argsrepr"] = REDACTED
        headers["kwargsrepr"] = REDACTED


def create_celery_app(settings: Settings, *, routes: Mapping[str, QueueRole] = ROUTES) -> Celery:
    """A configured Celery app with no tasks registered (enough to send tasks and read results)."""
    if not settings.broker_url:
        raise ServiceUnavailableError(
            "No broker configured: set PLIPBOT_BROKER_URL (e.g. redis://127.0.0.1:6379/0) "
            "to use workers; without it plipbot runs tasks in-process."
        )
    from celery import Celery, signals
    from kombu import Exchange, Queue

    signals.before_task_publish.connect(_hide_arguments, weak=False, dispatch_uid="plipbot-hide-arguments")

    workers = settings.workers
    queues = queue_names(settings)
    backend = settings.result_backend_url or settings.broker_url
    app = Celery("plipbot", broker=settings.broker_url, backend=backend, set_as_current=False)
    redis_options = _redis_options(settings)
    prefix = workers.key_prefix
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in sorted({*queues.values()})],
        task_default_queue=queues["gpu"],
        task_create_missing_queues=False,
        task_routes={
            name: {"queue": queues[role], "routing_key": queues[role]} for name, role in routes.items()
        },
        task_acks_late=False,  # per task: only idempotent tasks turn it on
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_soft_time_limit=workers.soft_time_limit_s,
        task_time_limit=max(workers.time_limit_s, workers.soft_time_limit_s + 1),
        task_track_started=False,
        worker_prefetch_multiplier=workers.prefetch_multiplier,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=True,
        result_expires=workers.result_expires_s,
        result_backend_always_retry=True,
        # A worker keeps trying to store a result for ~6 s (a Redis restart), then gives up.
        result_backend_max_retries=10,
        result_backend_base_sleep_between_retries_ms=50,
        result_backend_max_sleep_between_retries_ms=1000,
        result_backend_transport_options={
            "global_keyprefix": prefix,
            "retry_policy": {
                "max_retries": 3,
                "interval_start": 0.2,
                "interval_step": 0.5,
                "interval_max": 1,
            },
        },
        redis_socket_connect_timeout=redis_options["socket_connect_timeout"],
        redis_socket_timeout=redis_options["socket_timeout"],
        redis_retry_on_timeout=True,
        redis_socket_keepalive=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=workers.connect_timeout_s,
        broker_transport_options={
            **redis_options,
            "global_keyprefix": prefix,
            "visibility_timeout": workers.visibility_timeout_s,
            "unacked_restore_interval": workers.restore_interval_s,
            "unacked_restore_throttle": 1,
            # The re-queue pass holds a Redis lock that a worker killed mid-pass never releases; by
            # default it expires after 300 s, blocking every redelivery until then.
            "unacked_mutex_expire": max(5, int(workers.restore_interval_s * 3)),
            "max_retries": workers.publish_retries,
        },
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": workers.publish_retries,
            "interval_start": 0.2,
            "interval_step": 0.3,
            "interval_max": 1.0,
        },
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app
