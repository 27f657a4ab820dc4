"""What the case store holds: one `CaseRecord` per posted image, its payload, and what a search returns.

These types are backend-neutral on purpose: the embedded store (qdrant-edge) and the Qdrant server store
take and return exactly these, so the pipeline and the bot never see a Qdrant type and one test suite
can hold both backends to the same answers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Scope = Literal["server", "shared"]
"""`server`: only the guild that posted it sees the case; `shared`: every guild using plipbot does."""

VectorName = Literal["image", "text"]
"""Named vectors of a case: the image embedding, and the caption embedding when there is a caption."""

IMAGE_VECTOR: VectorName = "image"
TEXT_VECTOR: VectorName = "text"

_COLLECTION_PREFIX = "cases"
_UNSAFE_CHARS = re.compile(r"[^a-z0-9]+")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_MAX_PART_LEN = 48


class ModelIdentity(Protocol):
    """Anything naming an encoder and its pinned weights (the model registry's entries qualify)."""

    @property
    def name(self) -> str: ...

    @property
    def revision(self) -> str: ...


@dataclass(frozen=True)
class ModelKey:
    """The encoder whose embeddings a store holds; vectors of two keys must never share a collection."""

    name: str
    revision: str


def _sanitise_part(text: str, what: str) -> str:
    part = _UNSAFE_CHARS.sub("_", text.lower()).strip("_")
    if not part:
        raise ValueError(f"{what} {text!r} has no letters or digits to name a collection with")
    if len(part) > _MAX_PART_LEN:
        # Long local checkpoint paths stay distinct through the hash of the full text.
        digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:8]
        part = f"{part[: _MAX_PART_LEN - 9]}_{digest}"
    return part


def collection_name(model_name: str, revision: str) -> str:
    """Collection (and edge shard folder) for one model revision, e.g. `cases__plip__67ade53d`.

    Embeddings of different models, or of different weights of one model, live in different spaces;
    keying the collection on both makes mixing them impossible rather than merely discouraged. Runs
    of other characters become one `_`, so `__` only ever separates the parts; a full commit hash is
    shortened to its first 8 characters as in `git log --oneline`.
    """
    revision_part = revision.lower()
    if _COMMIT_SHA.fullmatch(revision_part):
        revision_part = revision_part[:8]
    return "__".join(
        (
            _COLLECTION_PREFIX,
            _sanitise_part(model_name, "Model name"),
            _sanitise_part(revision_part, "Revision"),
        )
    )


class CasePayload(BaseModel):
    """Everything stored beside the vectors of one case: where it came from and who may see it.

    Discord ids are kept as integers so that payload indexes can match them exactly; `created_at` is
    stored as an RFC 3339 string in UTC, which both Qdrant engines index as a datetime and range-filter.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    guild_id: int = Field(description="Discord server the case was posted in (or imported for).")
    channel_id: int | None = None
    message_id: int | None = Field(
        None, description="Post the image came from; lets a search skip its own post."
    )
    attachment_id: int | None = None
    jump_link: str | None = Field(None, description="Link back to the post; may outlive the attachment URL.")
    author_id: int | None = Field(None, description="Poster, so that withdrawing consent finds every case.")
    caption: str = ""
    tags: tuple[str, ...] = ()
    created_at: AwareDatetime
    source: str = Field("discord", min_length=1, description="discord, import, ...")
    scope: Scope = "server"
    phash: str = Field(
        pattern=r"^[0-9a-f]+$", description="Perceptual hash, lower-case hex, for de-duplication."
    )
    model: str = Field(min_length=1)
    revision: str = Field(min_length=1)

    @field_validator("created_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def to_storage(self) -> dict[str, Any]:
        """JSON-ready payload as the backends store it; unset optional ids are left out (`from_storage`
        restores them as None), which keeps imported cases small and their upserts faster."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_storage(cls, stored: dict[str, Any]) -> CasePayload:
        """Inverse of `to_storage`; fields this version does not know (written by a newer one) are
        dropped rather than fatal, so a rolling upgrade never breaks reads."""
        return cls.model_validate({key: value for key, value in stored.items() if key in cls.model_fields})


Vector = npt.NDArray[np.float32]
"""A validated embedding: 1-D, float32 (what the engines store), finite, non-zero, read-only."""


def as_vector(values: Sequence[float] | Any, what: str = "vector") -> Vector:
    """`values` as a `Vector`, or ValueError (cosine is undefined for the zero vector).

    Accepts lists, tuples and numpy arrays (an embedding straight from the encoder). Always copies, so
    the caller mutating its array later cannot change a record; float32 costs a quarter of Python
    floats in memory (a 200k-case import) and matches the engines' precision.
    """
    try:
        array = np.array(values, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a sequence of numbers") from err
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinity (or values too large for float32)")
    if not np.any(array):
        raise ValueError(f"{what} is all zeros; cosine similarity is undefined for it")
    array.setflags(write=False)
    return array


def _same_vector(left: Vector | None, right: Vector | None) -> bool:
    if left is None or right is None:
        return left is right
    return bool(np.array_equal(left, right))


@dataclass(frozen=True, eq=False)
class CaseRecord:
    """One case as written to and read from the store.

    `id` is a deterministic UUID string (see `store.ids`), so ingesting a post twice overwrites the
    same point. A case without a caption has no `text_vector` and is found by image searches only.
    Vectors come back from the store as the engines keep them: float32 and, for cosine, L2-normalised.
    """

    id: str
    payload: CasePayload
    image_vector: Vector
    text_vector: Vector | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_vector", as_vector(self.image_vector, "image_vector"))
        if self.text_vector is not None:
            object.__setattr__(self, "text_vector", as_vector(self.text_vector, "text_vector"))
            if len(self.text_vector) != len(self.image_vector):
                raise ValueError("image_vector and text_vector must have the same dimension")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CaseRecord):
            return NotImplemented
        return (
            self.id == other.id
            and self.payload == other.payload
            and _same_vector(self.image_vector, other.image_vector)
            and _same_vector(self.text_vector, other.text_vector)
        )

    def __hash__(self) -> int:
        return hash(self.id)

    def vectors(self) -> dict[str, list[float]]:
        """Named vectors as the backends take them (no `text` entry without a caption embedding)."""
        named = {IMAGE_VECTOR: self.image_vector.tolist()}
        if self.text_vector is not None:
            named[TEXT_VECTOR] = self.text_vector.tolist()
        return named


@dataclass(frozen=True)
class CaseHit:
    """One search result: the case, its cosine similarity to the query, and what to show about it."""

    id: str
    score: float
    payload: CasePayload


@dataclass(frozen=True)
class SearchFilter:
    """Which cases a search may return; the privacy rule lives here, not in each caller.

    `guild_id` is the asking server: it sees its own cases plus the `shared` cases of the servers in
    `sharing_guilds`, never another server's `server` cases. `None` (a DM, a command-line query) sees
    those shared cases only. `sharing_guilds` is the set of servers whose sharing is on *now*, read
    from the guild configuration when the query is made: a case stays stamped `shared` until a re-scope
    task rewrites it, so this check is what keeps a missed or late re-scope from leaking. It defaults
    to no server at all, so a caller that forgets it shows less, never more.
    `exclude_message_id` drops the query's own post; `collapse_cosine` keeps only the best of hits whose
    image vectors are at least that similar to each other (reposts of one image count once);
    `created_from`/`created_before` bound `created_at` (inclusive / exclusive).
    """

    guild_id: int | None
    sharing_guilds: frozenset[int] = frozenset()
    exclude_message_id: int | None = None
    collapse_cosine: float | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sharing_guilds", frozenset(self.sharing_guilds))
        if self.collapse_cosine is not None and not -1.0 <= self.collapse_cosine <= 1.0:
            raise ValueError("collapse_cosine must lie in [-1, 1]")
        for bound in (self.created_from, self.created_before):
            if bound is not None and bound.tzinfo is None:
                raise ValueError("created_from / created_before must be timezone-aware")
