"""The tasks: thin functions from a request contract to a result contract.

Each handler only strings steps together (resolve the image, encode it through the micro-batcher,
classify); the logic lives in model/ and ingest/. A handler raises PlipbotError subclasses for
expected failures and `workers.runtime.execute` turns them into TaskErrors, so every handler can be
called directly in a test with a `TaskContext`.

Adding a task (search, ingest_post, withdraw): one request and one result model in contracts.py, one
function here under `@TASKS.task(...)`; its queue is already in `workers.app.ROUTES`.

`create_worker_app` registers every spec on a Celery app, on a base Task class whose per-process
resources (the Container, hence the model) are built on first use, never at import or fork time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from celery import Task

from workers.contracts import (
    BatchStats,
    EmbedImagesRequest,
    EmbedResult,
    EmbedTextsRequest,
    ImageRef,
    ModelInfo,
    Suggestion,
    SuggestRequest,
    SuggestResult,
)
from workers.runtime import ResourcesHolder, TaskContext, TaskRegistry, TaskSpec, execute

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from celery import Celery

    from model.zeroshot import LabelSet
    from plipbot.composition import Container
    from plipbot.settings import Settings
    from workers.app import QueueRole
    from workers.batching import Batched

log = logging.getLogger(__name__)

TASKS = TaskRegistry()


def label_set_for(request: SuggestRequest) -> LabelSet:
    from model.presets import DEFAULT_PRESET, get_preset
    from model.zeroshot import LabelSet

    if request.labels is not None:
        label_set = LabelSet.from_texts(request.labels)
    else:
        label_set = get_preset(request.preset or DEFAULT_PRESET)
    return label_set.with_templates(request.templates) if request.templates else label_set


def _stats(batched: list[Batched[Any]], context: TaskContext) -> BatchStats:
    return BatchStats(
        batch_size=max((b.batch_size for b in batched), default=0),
        encode_ms=sum({b.batch_id: b.process_ms for b in batched}.values()),
        task_ms=context.elapsed_ms(),
    )


@TASKS.task("plipbot.suggest", request=SuggestRequest, result=SuggestResult, idempotent=True)
def suggest(request: SuggestRequest, context: TaskContext) -> SuggestResult:
    """Zero-shot label suggestions for one image."""
    label_set = label_set_for(request)  # a bad label set fails before any download
    batched = embed_one_image(request.image, context)
    return suggestion_for(request, label_set, batched, context)


def embed_one_image(image: ImageRef, context: TaskContext) -> list[Batched[Any]]:
    """Fetch, decode and encode one image through the micro-batcher (its vector is `[0].value`)."""
    with context.image_session() as session:
        loaded = context.load_image(image)
        batched = session.run([loaded], timeout_s=context.remaining_s())
    context.checkpoint()
    return batched


def suggestion_for(
    request: SuggestRequest, label_set: LabelSet, batched: list[Batched[Any]], context: TaskContext
) -> SuggestResult:
    """Zero-shot suggestions from an image vector the caller already has."""
    import numpy as np

    top_k = request.top_k or context.resources.settings.zeroshot.top_k
    model = context.resources.encoder_ready
    prediction = context.resources.predict(np.stack([batched[0].value]), label_set, top_k)[0]
    return SuggestResult(
        suggestions=[Suggestion(label=s.label, probability=s.probability) for s in prediction.suggestions],
        uncertain=prediction.uncertain,
        margin=prediction.margin,
        entropy=prediction.entropy,
        label_set=label_set.name,
        model=model,
        stats=_stats(batched, context),
    )


@TASKS.task("plipbot.embed_texts", request=EmbedTextsRequest, result=EmbedResult, idempotent=True)
def embed_texts(request: EmbedTextsRequest, context: TaskContext) -> EmbedResult:
    """Text embeddings, L2-normalised."""
    vectors = context.resources.encode_texts(list(request.texts))
    model: ModelInfo = context.resources.encoder_ready
    return EmbedResult(model=model, dim=int(vectors.shape[1]), vectors=vectors.tolist())


@TASKS.task("plipbot.embed_images", request=EmbedImagesRequest, result=EmbedResult, idempotent=True)
def embed_images(request: EmbedImagesRequest, context: TaskContext) -> EmbedResult:
    """Image embeddings, L2-normalised, encoded together with other requests' images."""
    with context.image_session() as session:
        images = [context.load_image(ref) for ref in request.images]
        batched = session.run(images, timeout_s=context.remaining_s())
    model = context.resources.encoder_ready
    return EmbedResult(
        model=model,
        dim=len(batched[0].value),
        vectors=[b.value.tolist() for b in batched],
        stats=_stats(batched, context),
    )


# --------------------------------------------------------------------------- Celery registration


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
        log.info("%s [%s] retries in %.1fs: %s", spec.name, self.request.id, countdown, outcome["message"])
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
    settings: Settings,
    *,
    container: Container | None = None,
    specs: Iterable[TaskSpec[Any, Any]] = TASKS,
    routes: Mapping[str, QueueRole] | None = None,
) -> tuple[Celery, ResourcesHolder]:
    """The worker side: the app from `create_celery_app` with every task registered."""
    from workers.app import ROUTES, create_celery_app

    app = create_celery_app(settings, routes=routes if routes is not None else ROUTES)
    resources = ResourcesHolder(settings, container)
    register_tasks(app, specs, resources)
    return app, resources


# The corpus tasks (answer, search, ingest_post, withdraw) register themselves on TASKS when imported;
# importing them here means every worker and the embedded mode serve them.
from workers import case_tasks  # noqa: E402, F401
