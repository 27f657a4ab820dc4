"""What crosses the queue: pydantic requests and results, serialised as JSON and nothing else.

Messages carry references, never pixels: an image travels as a URL (the Discord CDN link, or a
`file://` path for trusted local callers) or as the key of bytes parked in the blob store. That keeps
broker messages small and lets a redelivered task fetch the same input again.

Every task answers with its result model or a `TaskError`; the two are told apart by their `kind`
field, so a caller never has to catch an exception for an expected failure (a corrupt image, an
unknown preset, a time-out). Adding a task means adding one request and one result model here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BLOB_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")
URL_SCHEMES = ("http", "https", "file")
MAX_URL_CHARS = 2048
MAX_IMAGES_PER_REQUEST = 64
MAX_TEXTS_PER_REQUEST = 256
MAX_TEXT_CHARS = 1000

ErrorCode = Literal[
    "invalid_request",  # the request does not match its contract (a bug in the caller)
    "invalid_image",  # not an image, corrupt, too large, a decompression bomb
    "label_set",  # empty or duplicate labels, unknown preset, bad template
    "fetch_failed",  # the link could not be downloaded
    "blob_missing",  # the uploaded bytes expired or never existed
    "timeout",  # the task ran past its time limit, or the caller stopped waiting
    "unavailable",  # a dependency (model weights, store, database) cannot be reached
    "failed",  # another expected failure; the message says why
    "internal",  # a bug; the worker logged the traceback under the task id
]

TIMEOUT_MESSAGE = "The analysis took too long and was stopped; please try again in a moment."
INTERNAL_MESSAGE = "Something went wrong on our side while analysing this; it has been logged."


class Contract(BaseModel):
    """Base of every message: immutable, and strict about unknown fields in requests."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageRef(Contract):
    """Where a task finds an image: exactly one of `url` or `blob` (a blob-store key)."""

    url: str | None = Field(None, max_length=MAX_URL_CHARS)
    blob: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme = urlsplit(url).scheme.lower()
        if scheme not in URL_SCHEMES:
            raise ValueError(f"image URL scheme must be one of {', '.join(URL_SCHEMES)}, not '{scheme}'")
        return url

    @field_validator("blob")
    @classmethod
    def _check_blob(cls, blob: str | None) -> str | None:
        if blob is not None and not BLOB_KEY_PATTERN.match(blob):
            raise ValueError("blob key must be 64 lowercase hex characters (a blob store key)")
        return blob

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRef:
        if (self.url is None) == (self.blob is None):
            raise ValueError("an image reference needs exactly one of 'url' or 'blob'")
        return self

    @classmethod
    def from_url(cls, url: str) -> ImageRef:
        """A link (http, https) or a local `file://` URL."""
        return cls(url=url)

    @classmethod
    def from_blob(cls, key: str) -> ImageRef:
        """Bytes previously stored with `BlobStore.put`."""
        return cls(blob=key)

    def describe(self) -> str:
        """For logs: the URL, or the first characters of the blob key."""
        return self.url if self.url is not None else f"blob:{(self.blob or '')[:12]}"


class SuggestRequest(Contract):
    """Label suggestions for one image, from `labels` or a `preset` (the default preset if neither)."""

    image: ImageRef
    labels: list[Annotated[str, Field(max_length=200)]] | None = Field(None, max_length=200)
    preset: str | None = Field(None, max_length=64)
    templates: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=20)
    top_k: int | None = Field(None, ge=1, le=50)

    @model_validator(mode="after")
    def _labels_or_preset(self) -> SuggestRequest:
        if self.labels is not None and self.preset is not None:
            raise ValueError("give either 'labels' or 'preset', not both")
        return self


class EmbedTextsRequest(Contract):
    """Text embeddings (for search by words, or label sets built elsewhere)."""

    texts: list[Annotated[str, Field(max_length=MAX_TEXT_CHARS)]] = Field(
        min_length=1, max_length=MAX_TEXTS_PER_REQUEST
    )


class EmbedImagesRequest(Contract):
    """Image embeddings; the worker micro-batches them with other requests' images."""

    images: list[ImageRef] = Field(min_length=1, max_length=MAX_IMAGES_PER_REQUEST)


# ---------------------------------------------------------------------------------------- results


class Result(BaseModel):
    """Base of results: frozen, and tolerant of fields added by a newer worker during a rolling upgrade."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ModelInfo(Result):
    """Which weights answered (mirrors `model.identity.ModelIdentity.as_dict()`)."""

    name: str
    title: str
    source: str
    revision: str
    verified: bool
    label: str


class BatchStats(Result):
    """How the work was served, for operators and benchmarks (not for people)."""

    batch_size: int = Field(description="Largest micro-batch this request's images were encoded in.")
    encode_ms: float = Field(description="Time in the forward pass(es) that encoded this request's images.")
    task_ms: float = Field(description="Time inside the task, from start to result.")


class Suggestion(Result):
    """One label and its probability."""

    label: str
    probability: float


class Adaptation(Result):
    """What the server's confirmed examples did to this answer (`learning.adapters`)."""

    examples: int = Field(description="Confirmed examples of this server in the adapter's cache.")
    changed: bool = Field(description="The adapter changed the answer: another top label or a label moved.")
    moved: dict[str, float] = Field(
        default_factory=dict, description="Labels that moved: adapted minus zero-shot probability."
    )


class SuggestResult(Result):
    """Suggestions for one image, most probable first (mirrors `Prediction.as_dict()`)."""

    kind: Literal["suggest"] = "suggest"
    suggestions: list[Suggestion]
    uncertain: bool
    margin: float
    entropy: float
    label_set: str
    model: ModelInfo
    stats: BatchStats
    adaptation: Adaptation | None = None
    """Set when the server's examples adapted the answer; None for a zero-shot answer."""


class EmbedResult(Result):
    """L2-normalised float32 rows, in request order (JSON floats round-trip float32 exactly)."""

    kind: Literal["embed"] = "embed"
    model: ModelInfo
    dim: int
    vectors: list[list[float]]
    stats: BatchStats | None = None

    def as_array(self) -> Any:
        """The vectors as an (n, dim) float32 numpy array (numpy imported only when asked)."""
        import numpy as np

        return np.asarray(self.vectors, dtype=np.float32).reshape(len(self.vectors), self.dim)


class TaskError(Result):
    """An expected failure: `message` is one sentence fit to show people; `code` is for programs."""

    kind: Literal["error"] = "error"
    code: ErrorCode
    message: str
    retryable: bool = False
    task_id: str | None = None


ResultT = TypeVar("ResultT", bound=Result)


def parse_outcome(payload: Any, result_type: type[ResultT]) -> ResultT | TaskError:
    """A task's JSON answer as its result model or a TaskError (a malformed answer is an internal error)."""
    if isinstance(payload, dict) and payload.get("kind") == "error":
        return TaskError.model_validate(payload)
    try:
        return result_type.model_validate(payload)
    except ValueError as err:
        return TaskError(
            code="internal",
            message=f"The worker sent an unreadable answer ({type(err).__name__}).",
        )
