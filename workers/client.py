"""What the bot uses to run tasks: `TaskClient`, one interface over a broker or the embedded worker.

The client sends tasks *by name* with `app.send_task`, so the bot imports neither the task code nor
torch. Requests and answers are the pydantic contracts, JSON on the wire in both modes. Every call
ends in one of three ways, within its time-out:

- the result model, or a `TaskError` the task returned (corrupt image, unknown preset...);
- a `TaskError(code="timeout")` when no answer came in time (the task may still finish later);
- `ServiceUnavailableError` (a PlipbotError with a sentence for people) when the broker or the
  result store cannot be reached, so the bot can say "try again in a minute" instead of hanging.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from plipbot.errors import ServiceUnavailableError
from plipbot.redaction import REDACTED
from workers.case_contracts import (
    AnswerRequest,
    AnswerResult,
    IngestPostRequest,
    IngestPostResult,
    SearchRequest,
    SearchResult,
    WithdrawRequest,
    WithdrawResult,
)
from workers.contracts import (
    INTERNAL_MESSAGE,
    TIMEOUT_MESSAGE,
    EmbedImagesRequest,
    EmbedResult,
    EmbedTextsRequest,
    ImageRef,
    Result,
    SuggestRequest,
    SuggestResult,
    TaskError,
    parse_outcome,
)
from workers.privacy_contracts import (
    ForgetMessagesRequest,
    ForgetMessagesResult,
    RescopeRequest,
    RescopeResult,
    SweepErasuresRequest,
    SweepErasuresResult,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from celery import Celery
    from celery.result import AsyncResult

    from plipbot.composition import Container
    from workers.blobs import BlobStore

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", bound=Result)

BROKER_DOWN = (
    "The analysis service is unreachable right now (its message queue is down); please try again in a minute."
)
RESULTS_DOWN = (
    "Lost contact with the analysis service while waiting for the answer; please try again in a minute."
)
NO_ANSWER = "No answer from the analysis service in time; it may be busy or restarting. Please try again."


class AnswerTimeoutError(Exception):
    """Internal: a transport got no answer in time (the client turns it into a timeout TaskError)."""


class TaskTransport(Protocol):
    """Sends one JSON payload to the task `name` and returns the task's JSON answer."""

    def call(self, name: str, payload: dict[str, Any], timeout_s: float) -> Any: ...

    def close(self) -> None: ...


class CeleryTransport:
    """Through the broker: `send_task` by name, then wait on the result backend."""

    def __init__(self, app: Celery, *, retry_wait_s: float = 0.5) -> None:
        self.app = app
        self._retry_wait_s = retry_wait_s

    def call(self, name: str, payload: dict[str, Any], timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        async_result = self._send(name, payload)
        return self._wait(async_result, deadline)

    def _send(self, name: str, payload: dict[str, Any]) -> AsyncResult:
        from kombu.exceptions import OperationalError

        try:
            # The placeholders are what Celery logs, shows in events and `inspect` instead of the payload.
            return self.app.send_task(name, args=(payload,), argsrepr=REDACTED, kwargsrepr=REDACTED)
        # RuntimeError: the result backend subscribes before publishing, and says "retry limit
        # exceeded" that way when the result store is down.
        except (OperationalError, OSError, RuntimeError, *self._redis_errors()) as err:
            log.warning("cannot send %s: %s", name, type(err).__name__)
            raise ServiceUnavailableError(BROKER_DOWN) from err

    def _wait(self, async_result: AsyncResult, deadline: float) -> Any:
        """Wait for the answer; ride out a short result-store outage, but never past the deadline."""
        from celery.exceptions import TimeoutError as CeleryTimeout

        lost: BaseException | None = None
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                answer = async_result.get(timeout=remaining, propagate=False, interval=0.2)
            except CeleryTimeout:
                break
            except (OSError, RuntimeError, *self._redis_errors()) as err:
                # The backend lost Redis (restarted?) and could not reconnect yet: try again.
                lost = err
                log.info("waiting for %s: result store unreachable (%r); retrying", async_result.id, err)
                time.sleep(min(self._retry_wait_s, max(0.0, deadline - time.monotonic())))
                continue
            self._forget(async_result)
            return _failure_as_error(async_result, answer)
        if lost is not None and not self._backend_reachable():
            raise ServiceUnavailableError(RESULTS_DOWN) from lost
        raise AnswerTimeoutError(async_result.id)

    def _forget(self, async_result: AsyncResult) -> None:
        """Delete the stored result once read: answers show other people's cases, and a result kept
        until it expires is one more place a withdrawal would have to reach."""
        try:
            async_result.forget()
        except (OSError, RuntimeError, *self._redis_errors()) as err:
            log.info("result %s not deleted (%s); it expires on its own", async_result.id, type(err).__name__)

    @staticmethod
    def _redis_errors() -> tuple[type[BaseException], ...]:
        import redis

        return (redis.RedisError,)

    def _backend_reachable(self) -> bool:
        try:
            self.app.backend.client.ping()
        except Exception:
            return False
        return True

    def close(self) -> None:
        self.app.close()


def _failure_as_error(async_result: AsyncResult, answer: Any) -> Any:
    """A task that *raised* (hard time limit, worker bug) as a TaskError; answers pass through."""
    if not isinstance(answer, BaseException):
        return answer
    from celery.exceptions import TimeLimitExceeded

    if isinstance(answer, TimeLimitExceeded):
        return TaskError(
            code="timeout", message=TIMEOUT_MESSAGE, retryable=True, task_id=async_result.id
        ).model_dump()
    log.error("task %s failed in the worker: %s", async_result.id, type(answer).__name__)
    return TaskError(code="internal", message=INTERNAL_MESSAGE, task_id=async_result.id).model_dump()


class TaskClient:
    """Typed calls to the tasks; see the module docstring for how a call can end."""

    def __init__(
        self,
        transport: TaskTransport,
        *,
        default_timeout_s: float = 30.0,
        blob_store: BlobStore | None = None,
    ) -> None:
        self.transport = transport
        self.default_timeout_s = default_timeout_s
        self.blob_store = blob_store

    @classmethod
    def from_container(cls, container: Container) -> TaskClient:
        """Broker mode when `broker_url` is set, else an embedded worker on this very container."""
        settings = container.settings
        transport: TaskTransport
        if settings.broker_url:
            transport = CeleryTransport(container.celery_app)
        else:
            from workers.embedded import EmbeddedTransport, EmbeddedWorker

            transport = EmbeddedTransport(
                EmbeddedWorker(container, threads=settings.workers.embedded_threads)
            )
        return cls(
            transport, default_timeout_s=settings.workers.client_timeout_s, blob_store=container.blob_store
        )

    # ------------------------------------------------------------------------------ generic

    def call(
        self, name: str, request: BaseModel, result_type: type[ResultT], *, timeout_s: float | None = None
    ) -> ResultT | TaskError:
        """Run task `name` on `request`; its result, a TaskError, or ServiceUnavailableError."""
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        try:
            answer = self.transport.call(name, request.model_dump(mode="json"), timeout)
        except AnswerTimeoutError:
            return TaskError(code="timeout", message=NO_ANSWER, retryable=True)
        return parse_outcome(answer, result_type)

    # ------------------------------------------------------------------------------ tasks

    def suggest(
        self,
        image: ImageRef,
        *,
        labels: Sequence[str] | None = None,
        preset: str | None = None,
        templates: Sequence[str] = (),
        top_k: int | None = None,
        timeout_s: float | None = None,
    ) -> SuggestResult | TaskError:
        """Label suggestions for one image (`labels` or `preset`; neither = the default preset)."""
        try:
            request = SuggestRequest(
                image=image,
                labels=list(labels) if labels is not None else None,
                preset=preset,
                templates=list(templates),
                top_k=top_k,
            )
        except ValidationError as err:
            return _invalid(err)
        return self.call("plipbot.suggest", request, SuggestResult, timeout_s=timeout_s)

    def embed_texts(self, texts: Sequence[str], *, timeout_s: float | None = None) -> EmbedResult | TaskError:
        """L2-normalised text embeddings, in order."""
        try:
            request = EmbedTextsRequest(texts=list(texts))
        except ValidationError as err:
            return _invalid(err)
        return self.call("plipbot.embed_texts", request, EmbedResult, timeout_s=timeout_s)

    def embed_images(
        self, images: Sequence[ImageRef], *, timeout_s: float | None = None
    ) -> EmbedResult | TaskError:
        """L2-normalised image embeddings, in order."""
        try:
            request = EmbedImagesRequest(images=list(images))
        except ValidationError as err:
            return _invalid(err)
        return self.call("plipbot.embed_images", request, EmbedResult, timeout_s=timeout_s)

    # ------------------------------------------------------------------------------ corpus tasks

    def answer(self, request: AnswerRequest, *, timeout_s: float | None = None) -> AnswerResult | TaskError:
        """Suggestions and similar cases for one image (one embedding, one round trip)."""
        return self.call("plipbot.answer", request, AnswerResult, timeout_s=timeout_s)

    def search(self, request: SearchRequest, *, timeout_s: float | None = None) -> SearchResult | TaskError:
        """Similar cases to an image or a text, through the asking server's privacy filter."""
        return self.call("plipbot.search", request, SearchResult, timeout_s=timeout_s)

    def ingest_post(
        self, request: IngestPostRequest, *, timeout_s: float | None = None
    ) -> IngestPostResult | TaskError:
        """Queue one consenting post's attachment for the corpus and wait for the outcome."""
        return self.call("plipbot.ingest_post", request, IngestPostResult, timeout_s=timeout_s)

    def withdraw(
        self, request: WithdrawRequest, *, timeout_s: float | None = None
    ) -> WithdrawResult | TaskError:
        """Withdraw consent and delete every trace of the user's posts."""
        return self.call("plipbot.withdraw", request, WithdrawResult, timeout_s=timeout_s)

    # ------------------------------------------------------------------------------ privacy tasks

    def rescope(
        self, request: RescopeRequest, *, timeout_s: float | None = None
    ) -> RescopeResult | TaskError:
        """Make the stored scope of a server's cases (one author's) follow the current state."""
        return self.call("plipbot.rescope", request, RescopeResult, timeout_s=timeout_s)

    def forget_messages(
        self, request: ForgetMessagesRequest, *, timeout_s: float | None = None
    ) -> ForgetMessagesResult | TaskError:
        """Erase what messages deleted on Discord left in every store."""
        return self.call("plipbot.forget_messages", request, ForgetMessagesResult, timeout_s=timeout_s)

    def sweep_erasures(self, *, timeout_s: float | None = None) -> SweepErasuresResult | TaskError:
        """Finish every withdrawal a failing store cut short."""
        return self.call(
            "plipbot.sweep_erasures", SweepErasuresRequest(), SweepErasuresResult, timeout_s=timeout_s
        )

    def upload(self, data: bytes) -> ImageRef:
        """Park uploaded bytes in the blob store; the reference to put in a request."""
        if self.blob_store is None:
            raise ServiceUnavailableError("This client has no upload store configured.")
        return ImageRef.from_blob(self.blob_store.put(data))

    def close(self) -> None:
        self.transport.close()


def _invalid(err: ValidationError) -> TaskError:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "request"
    return TaskError(code="invalid_request", message=f"Invalid request ({where}: {first['msg']}).")
