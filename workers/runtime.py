"""The machinery every task shares, whichever way it runs (Celery worker or embedded thread pool).

- `TaskSpec` / `TaskRegistry`: a task is data (name, request and result contracts, handler,
  idempotency), so Celery registration, routing checks and the embedded worker read one table.
- `execute`: validate the JSON request, run the handler, and turn every expected failure into a
  `TaskError` (unexpected ones are logged with their traceback and answered as `internal`).
- `WorkerResources`: what handlers use, built lazily once per process: the Container (and so the
  model), the blob store, the image micro-batcher, and the lock that keeps the model single-entry.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from plipbot.errors import (
    FetchError,
    InputFileError,
    InvalidImageError,
    LabelSetError,
    PlipbotError,
    ServiceUnavailableError,
    UnknownModelError,
    WeightsMissingError,
)
from workers.blobs import BlobNotFoundError
from workers.contracts import (
    INTERNAL_MESSAGE,
    TIMEOUT_MESSAGE,
    ErrorCode,
    ImageRef,
    ModelInfo,
    Result,
    TaskError,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from model.zeroshot import LabelSet, Prediction
    from plipbot.composition import Container
    from plipbot.settings import Settings
    from workers.batching import BatchSession, MicroBatcher

log = logging.getLogger(__name__)

ReqT = TypeVar("ReqT", bound=BaseModel)
ResT = TypeVar("ResT", bound=Result)


class TaskTimeoutError(PlipbotError):
    """The task's own deadline passed (raised at checkpoints; works in every pool, threads included)."""


# ---------------------------------------------------------------------------------- task table


@dataclass(frozen=True)
class TaskSpec(Generic[ReqT, ResT]):
    """One task: its wire name, contracts, handler, and whether running it twice is harmless.

    `idempotent` decides acknowledgement: idempotent tasks are acknowledged after they finish, so a
    worker that dies mid-task leaves the message to be redelivered; the others are acknowledged on
    receipt (at most once). `max_retries` applies to failures the handler marks retryable.
    """

    name: str
    request_type: type[ReqT]
    result_type: type[ResT]
    handler: Callable[[ReqT, TaskContext], ResT]
    idempotent: bool
    max_retries: int = 0
    retry_backoff_s: float = 1.0


class TaskRegistry:
    """Task specs by name; the `task` decorator is how tasks.py declares them."""

    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec[Any, Any]] = {}

    def task(
        self,
        name: str,
        *,
        request: type[ReqT],
        result: type[ResT],
        idempotent: bool,
        max_retries: int = 0,
    ) -> Callable[[Callable[[ReqT, TaskContext], ResT]], Callable[[ReqT, TaskContext], ResT]]:
        """Register a handler under `name` (the handler itself stays a plain, directly callable function)."""

        def register(handler: Callable[[ReqT, TaskContext], ResT]) -> Callable[[ReqT, TaskContext], ResT]:
            if name in self._specs:
                raise ValueError(f"task {name} is registered twice")
            self._specs[name] = TaskSpec(name, request, result, handler, idempotent, max_retries)
            return handler

        return register

    def add(self, spec: TaskSpec[Any, Any]) -> None:
        """Register a ready-made spec (tests add probe tasks this way)."""
        if spec.name in self._specs:
            raise ValueError(f"task {spec.name} is registered twice")
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec[Any, Any]:
        return self._specs[name]

    def __iter__(self) -> Iterator[TaskSpec[Any, Any]]:
        return iter(list(self._specs.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def names(self) -> list[str]:
        return sorted(self._specs)


def merged(*registries: Iterable[TaskSpec[Any, Any]]) -> TaskRegistry:
    """One registry holding the specs of several (duplicates are an error)."""
    out = TaskRegistry()
    for registry in registries:
        for spec in registry:
            out.add(spec)
    return out


# ------------------------------------------------------------------------------ error mapping

_ERROR_CODES: tuple[tuple[type[BaseException], ErrorCode], ...] = (
    (TaskTimeoutError, "timeout"),
    (InvalidImageError, "invalid_image"),
    (LabelSetError, "label_set"),
    (BlobNotFoundError, "blob_missing"),
    (FetchError, "fetch_failed"),
    (InputFileError, "fetch_failed"),
    (ServiceUnavailableError, "unavailable"),
    (WeightsMissingError, "unavailable"),
    (UnknownModelError, "unavailable"),
)


def task_error_for(err: PlipbotError, task_id: str | None = None) -> TaskError:
    """The TaskError for an expected failure; its user message is kept as is."""
    code: ErrorCode = next((c for kind, c in _ERROR_CODES if isinstance(err, kind)), "failed")
    retryable = bool(getattr(err, "retryable", False)) or code == "unavailable"
    return TaskError(code=code, message=err.user_message, retryable=retryable, task_id=task_id)


def _describe_validation(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "request"
    return f"Invalid request ({where}: {first['msg']})."


def execute(
    spec: TaskSpec[Any, Any],
    resources: Callable[[], WorkerResources],
    payload: Any,
    *,
    task_id: str | None,
    time_limit_s: float,
    timeout_errors: tuple[type[BaseException], ...] = (),
) -> dict[str, Any]:
    """Run one task on a JSON payload and return a JSON-ready dict: its result, or a TaskError."""
    started = time.perf_counter()
    try:
        request = spec.request_type.model_validate(payload)
    except ValidationError as err:
        invalid = TaskError(code="invalid_request", message=_describe_validation(err), task_id=task_id)
        return invalid.model_dump(mode="json")
    try:
        context = TaskContext(resources(), task_id, time.monotonic() + time_limit_s, started)
        outcome: BaseModel = spec.handler(request, context)
    except PlipbotError as err:
        outcome = task_error_for(err, task_id)
    except (TimeoutError, *timeout_errors):  # TimeoutError: e.g. the micro-batcher did not answer in time
        outcome = TaskError(code="timeout", message=TIMEOUT_MESSAGE, retryable=True, task_id=task_id)
    except Exception:
        log.exception("task %s [%s] failed", spec.name, task_id)
        outcome = TaskError(code="internal", message=INTERNAL_MESSAGE, task_id=task_id)
    return outcome.model_dump(mode="json")


# ---------------------------------------------------------------------------- per-call context


@dataclass
class TaskContext:
    """What a handler gets besides its request: the process's resources and its own deadline."""

    resources: WorkerResources
    task_id: str | None
    deadline: float  # time.monotonic() value
    started: float = field(default_factory=time.perf_counter)

    def remaining_s(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def checkpoint(self) -> None:
        """Stop here with a timeout error if the deadline has passed."""
        if time.monotonic() >= self.deadline:
            raise TaskTimeoutError(TIMEOUT_MESSAGE)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    # Convenience pass-throughs, so handlers read as the steps they take.

    def load_image(self, ref: ImageRef) -> Image.Image:
        self.checkpoint()
        return self.resources.load_image(ref, timeout_s=self.remaining_s())

    def image_session(self) -> BatchSession[Image.Image, np.ndarray]:
        return self.resources.image_batcher.session()


# ---------------------------------------------------------------------------- per-process state


class WorkerResources:
    """Everything heavy a worker process holds, each built on first use.

    One instance per process (see `ResourcesHolder`), shared by all of its task threads. The model
    is entered under `model_lock`: image batches from the collector thread, label and text
    encodings from task threads, never two at once.
    """

    def __init__(self, container: Container) -> None:
        self.container = container
        self.settings: Settings = container.settings
        self.model_lock = threading.RLock()
        self._build_lock = threading.Lock()

    @cached_property
    def encoder_ready(self) -> ModelInfo:
        """Load the model (once) and log what this worker serves."""
        with self._build_lock, self.model_lock:
            encoder = self.container.encoder
            info = encoder.info
            log.info(
                "plipbot worker %d serves %s on %s (%s, batch window %.0f ms, max %d)",
                os.getpid(),
                info.identity.label,
                info.device,
                info.precision,
                self.settings.workers.batch_window_ms,
                self.settings.workers.batch_max,
            )
            return ModelInfo.model_validate(info.identity.as_dict())

    @cached_property
    def image_batcher(self) -> MicroBatcher[Image.Image, np.ndarray]:
        from workers.batching import MicroBatcher

        with self._build_lock:
            return MicroBatcher(
                self._encode_image_batch,
                max_batch=self.settings.workers.batch_max,
                window_s=self.settings.workers.batch_window_ms / 1000,
                name="plipbot-image-batcher",
            )

    def _encode_image_batch(self, images: list[Image.Image]) -> list[np.ndarray]:
        self.encoder_ready  # noqa: B018  (loads and logs on first use)
        with self.model_lock:
            return list(self.container.encoder.encode_images(images))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.encoder_ready  # noqa: B018
        with self.model_lock:
            return self.container.encoder.encode_texts(texts)

    def predict(self, embeddings: np.ndarray, label_set: LabelSet, top_k: int) -> list[Prediction]:
        self.encoder_ready  # noqa: B018
        with self.model_lock:  # label embeddings may be encoded (and the classifier's cache updated)
            return self.container.zero_shot.predict_embeddings(embeddings, label_set, top_k)

    def warm_up(self) -> float:
        """Load and exercise what the first request needs; returns the seconds it took.

        `plipbot worker` and `plipbot run` call this before they consume tasks or connect to Discord,
        so the first mention is answered at steady-state speed: the weights (and oneDNN's kernels, via
        one image and one prompt), the built-in label sets' embeddings (the default among them), the
        image decoders, and the case store with one search. Nothing leaves the process: the search's
        answer is dropped. A store that cannot be opened is logged, not fatal: requests will report it.
        """
        from model.presets import get_preset, preset_names

        started = time.perf_counter()
        self.encoder_ready  # noqa: B018  (loads and logs)
        encoder = self.container.encoder
        with self.model_lock:
            encoder.warm_up()
            for name in preset_names():
                self.container.zero_shot.label_embeddings(get_preset(name))
        self._warm_up_answer()
        return time.perf_counter() - started

    def _warm_up_answer(self) -> None:
        """One real `plipbot.answer` (blob store, decode, micro-batcher, suggest, learning, search) for
        a server id no Discord server has; its answer is dropped. Failures are logged, not fatal."""
        from workers.case_contracts import AnswerRequest
        from workers.tasks import TASKS  # imported here: the task modules import this one

        try:
            blob = self.container.blob_store.put(_warm_up_jpeg())
            request = AnswerRequest(image=ImageRef.from_blob(blob), guild_id=WARM_UP_GUILD_ID, k=3)
            payload = request.model_dump(mode="json")
        except PlipbotError as err:
            log.warning("warm-up could not store its sample image: %s", err.user_message)
            return
        limit = self.settings.workers.soft_time_limit_s
        spec = TASKS.get("plipbot.answer")
        outcome = execute(spec, lambda: self, payload, task_id="warm-up", time_limit_s=limit)
        if outcome.get("kind") == "error":
            log.warning("warm-up answer failed: %s", outcome.get("message"))

    def load_image(self, ref: ImageRef, *, timeout_s: float) -> Image.Image:
        """Fetch or look up the bytes behind `ref` and decode them under the configured limits."""
        from model.images import decode_image

        return decode_image(self.image_bytes(ref, timeout_s=timeout_s), self.container.image_limits).image

    def image_bytes(self, ref: ImageRef, *, timeout_s: float) -> bytes:
        if ref.blob is not None:
            return self.container.blob_store.get(ref.blob)
        assert ref.url is not None
        from ingest.fetch import fetch_bytes

        workers = self.settings.workers
        is_file = ref.url.lower().startswith("file:")
        if is_file and not workers.allow_file_urls:
            raise FetchError("Local file links are not accepted here; upload the image instead.", url=ref.url)
        ingest = self.settings.ingest
        return fetch_bytes(
            ref.url,
            max_bytes=ingest.max_bytes,
            timeout_s=max(0.1, min(ingest.fetch_timeout_s, timeout_s)),
            untrusted=not is_file and not workers.allow_private_urls,
        )

    def close(self) -> None:
        if "image_batcher" in self.__dict__:
            self.image_batcher.close()


#: The warm-up's answer asks for this server: Discord ids are far larger, so it matches no case.
WARM_UP_GUILD_ID = 1


def _warm_up_jpeg() -> bytes:
    """A 640x480 JPEG with some texture, like a small upload (loads Pillow's JPEG plugin)."""
    import io

    import numpy as np
    from PIL import Image as PILImage

    rows = np.linspace(0, 255, 480, dtype=np.uint8)[:, None, None]
    cols = np.linspace(255, 0, 640, dtype=np.uint8)[None, :, None]
    pixels = np.concatenate([rows + 0 * cols, 0 * rows + cols, (rows // 2 + cols // 2)], axis=2)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


class ResourcesHolder:
    """Hands each process its own `WorkerResources`, built on first use.

    Pid-aware: a prefork child inherits the holder from its parent but not the parent's threads
    (the batcher's collector) or CUDA context, so a new process gets fresh resources on a fresh
    Container (`Container.for_new_process`), while threads of one process share one. The Container
    is passed in by the composition root; the worker never imports it back.
    """

    def __init__(self, container: Container) -> None:
        self._container = container
        self._owner_pid = os.getpid()
        self._pid: int | None = None
        self._resources: WorkerResources | None = None
        self._lock = threading.Lock()

    def __call__(self) -> WorkerResources:
        pid = os.getpid()
        if self._pid == pid and self._resources is not None:
            return self._resources
        with self._lock:
            if self._pid != pid or self._resources is None:
                own = pid == self._owner_pid
                container = self._container if own else self._container.for_new_process()
                self._resources = WorkerResources(container)
                self._pid = pid
            return self._resources

    def close(self) -> None:
        if self._resources is not None and self._pid == os.getpid():
            self._resources.close()
