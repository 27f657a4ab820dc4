"""`CaseStore`: the one interface the pipeline and the bot use, whatever engine holds the vectors.

Like qdrant-client's local/remote split, the semantics live here once (argument checks, the guild
privacy rule, near-duplicate collapsing, batching, tie-breaking) and each backend only translates a
handful of primitives (`_query`, `_upsert`, ...) to its engine. That is what lets one test suite run
unchanged against both backends and expect the same answers.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from plipbot.errors import StoreError
from store.records import (
    IMAGE_VECTOR,
    CaseHit,
    CasePayload,
    CaseRecord,
    ModelIdentity,
    Scope,
    SearchFilter,
    Vector,
    VectorName,
    as_vector,
    collection_name,
)

PayloadKind = Literal["integer", "keyword", "datetime"]

INDEXED_FIELDS: dict[str, PayloadKind] = {
    "guild_id": "integer",
    "scope": "keyword",
    "author_id": "integer",
    "message_id": "integer",
    "phash": "keyword",
    "created_at": "datetime",
}
"""Payload fields that filters use; indexed so that filtered searches stay fast as the corpus grows."""

COLLAPSE_OVERFETCH = 2
"""With `collapse_cosine`, fetch this many times `k` candidates first, since some will collapse (more
are fetched when too many did). Twice is ample because ingest refuses reposts within a server, so
only cross-server reposts are left to collapse at query time."""

REFETCH_GROWTH = 4
"""When too many collapsed, fetch this many times more: few round trips even through many reposts."""

MAX_CANDIDATES = 1024
"""Upper bound on candidates fetched for one post-filtered search, however many reposts there are."""

MAX_ATTACHMENTS_PER_MESSAGE = 10
"""Discord's limit: a search that skips its own post fetches this many extra candidates."""

SHARED_SCOPE: Scope = "shared"


@dataclass(frozen=True)
class FieldMatch:
    """Payload field `key` equals `value` exactly."""

    key: str
    value: int | str


@dataclass(frozen=True)
class FieldIn:
    """Payload field `key` equals one of `values` (Qdrant's match-any). Empty `values` match nothing."""

    key: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class AllOf:
    """Every one of `conditions` (a nested filter, so that a `should` branch can be a conjunction)."""

    conditions: tuple[FieldMatch | FieldIn, ...]


Condition = FieldMatch | FieldIn | AllOf


@dataclass(frozen=True)
class PointCriteria:
    """Backend-neutral filter: every `must`, at least one `should` (when any), no `must_not`, and
    `created_from <= created_at < created_before`. Each backend translates it to its own filter type."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()
    created_from: datetime | None = None
    created_before: datetime | None = None

    @property
    def matches_nothing(self) -> bool:
        """Whether a `must` is an empty match-any: the store answers empty without asking the engine
        (the engines disagree on what an empty match-any means, and the answer is known anyway)."""
        return any(isinstance(condition, FieldIn) and not condition.values for condition in self.must)


@dataclass(frozen=True)
class ScoredCandidate:
    """A hit as a backend returns it: the payload as stored, and the image vector when collapsing
    needs it. Only the candidates a search keeps are validated into a `CaseHit` (`hit()`): the bot's
    query fetches two to three times `k` candidates, and validating each costs ~30 µs of Python."""

    id: str
    score: float
    stored_payload: Mapping[str, Any]
    image_vector: np.ndarray | None = None

    @property
    def message_id(self) -> int | None:
        return self.stored_payload.get("message_id")

    def hit(self) -> CaseHit:
        payload = CasePayload.from_storage(dict(self.stored_payload))
        return CaseHit(id=self.id, score=self.score, payload=payload)


def visibility_criteria(search_filter: SearchFilter, *, exclude_own_message: bool = True) -> PointCriteria:
    """The guild privacy rule as criteria: own cases, or shared ones of a server that shares now, minus
    the query's own post (unless the caller drops that post itself).

    The shared branch needs both the case's stamp (`scope` = shared: its author agreed, and the last
    re-scope saw its server sharing) and its server in `sharing_guilds` (the server shares at query
    time). Either alone would do while every re-scope task runs; together a missed one cannot leak.
    """
    sharing = tuple(sorted(search_filter.sharing_guilds))
    shared_branch = (FieldMatch("scope", SHARED_SCOPE), FieldIn("guild_id", sharing))
    must: tuple[Condition, ...]
    should: tuple[Condition, ...]
    if search_filter.guild_id is None:
        must, should = shared_branch, ()
    elif not sharing:
        must, should = (FieldMatch("guild_id", search_filter.guild_id),), ()
    else:
        must = ()
        should = (FieldMatch("guild_id", search_filter.guild_id), AllOf(shared_branch))
    must_not: tuple[Condition, ...] = ()
    if exclude_own_message and search_filter.exclude_message_id is not None:
        must_not = (FieldMatch("message_id", search_filter.exclude_message_id),)
    return PointCriteria(
        must=must,
        should=should,
        must_not=must_not,
        created_from=search_filter.created_from,
        created_before=search_filter.created_before,
    )


def collapse_near_duplicates(
    candidates: Sequence[ScoredCandidate], threshold: float, k: int
) -> list[CaseHit]:
    """Keep candidates in rank order, dropping any whose image cosine with a kept one is >= threshold.

    Greedy by rank, so of a cluster of reposts the best-scoring one stands for all of them. Each
    candidate is compared with the (at most `k`) kept ones only, so a thousand candidates through a
    cluster of reposts cost a thousand small products, not a thousand-square matrix.
    """
    if not candidates:
        return []
    if any(candidate.image_vector is None for candidate in candidates):
        raise StoreError("The case store returned a hit without its image vector.")
    kept: list[int] = []
    kept_vectors = np.empty((k, len(candidates[0].image_vector)), dtype=np.float64)  # type: ignore[arg-type]
    for row, candidate in enumerate(candidates):
        vector = np.asarray(candidate.image_vector, dtype=np.float64)
        vector = vector / np.linalg.norm(vector)
        if kept and bool(np.any(kept_vectors[: len(kept)] @ vector >= threshold)):
            continue
        kept_vectors[len(kept)] = vector
        kept.append(row)
        if len(kept) == k:
            break
    return [candidates[row].hit() for row in kept]


def _normalise_ids(ids: Iterable[str]) -> list[str]:
    """Canonical UUID strings, in order, without repeats (ids are UUIDs; see `store.ids`)."""
    seen: dict[str, None] = {}
    for point_id in ids:
        try:
            seen[str(uuid.UUID(str(point_id)))] = None
        except ValueError as err:
            raise ValueError(f"{point_id!r} is not a case id (a UUID string)") from err
    return list(seen)


class CaseStore(ABC):
    """Cases of one model revision: upsert, look up, search with the guild rule, withdraw.

    Reads on a store whose collection does not exist yet answer empty (a fresh install has no similar
    cases, which is not an error); writes need `ensure_collection(dim)` first. Failures of the engine
    raise `StoreError`, an unreachable server `ServiceUnavailableError`; bad arguments are bugs and
    raise `ValueError`.
    """

    upsert_batch_size = 256
    """Points per write: bounds request size (server) and peak memory (edge) on bulk imports."""

    def __init__(self, model: ModelIdentity) -> None:
        self.model_name = model.name
        self.revision = model.revision
        self.collection = collection_name(model.name, model.revision)
        self._closed = False
        self._bulk_depth = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(collection={self.collection!r})"

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the engine (the edge shard's lock, the server connection); safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def dim(self) -> int | None:
        """Vector dimension of the collection, or None when it does not exist yet."""
        self._check_open()
        return self._collection_dim()

    def ensure_collection(self, dim: int) -> None:
        """Create the collection (named vectors `image` and `text`, cosine) and its payload indexes.

        Idempotent; an existing collection of another dimension is an error, since it can only mean
        that the collection name no longer identifies the model.
        """
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self._check_open()
        existing = self._collection_dim()
        if existing is None:
            self._create_collection(dim)
        elif existing != dim:
            raise StoreError(
                f"The case collection {self.collection} holds {existing}-dimensional vectors, "
                f"not {dim}; it belongs to another model."
            )
        self._ensure_payload_indexes()

    def optimize(self) -> None:
        """Index every point written so far (HNSW graph, quantization; see `store.tuning`), blocking.

        A bulk import calls this once at the end, so that its first searches are fast; the embedded
        engine also does it by itself every `AUTO_OPTIMIZE_POINTS` writes. A Qdrant server indexes in
        the background, so there it returns at once.
        """
        self._check_open()
        if self._collection_dim() is not None:
            self._optimize()

    @contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Writes inside leave indexing to the end: one `optimize()` when the block completes.

        Building the index once costs a fraction of growing it every `AUTO_OPTIMIZE_POINTS` writes
        (each merge re-links the new points into the whole graph). Searches inside still answer,
        by brute force over what is not indexed yet. Nests; an error skips the final optimize (the
        next automatic one, or the next opening, catches up).
        """
        self._bulk_depth += 1
        try:
            yield
        finally:
            self._bulk_depth -= 1
        if self._bulk_depth == 0:
            self.optimize()

    # -- writes -----------------------------------------------------------------------------------

    def upsert(self, records: Iterable[CaseRecord]) -> None:
        """Insert or overwrite cases by id: writing the same id twice leaves one point."""
        self._check_open()
        dim = self._collection_dim()
        if dim is None:
            raise StoreError(f"The case collection {self.collection} does not exist yet.")
        batch: list[CaseRecord] = []
        for record in records:
            self._check_record(record, dim)
            batch.append(record)
            if len(batch) == self.upsert_batch_size:
                self._upsert(batch)
                batch = []
        if batch:
            self._upsert(batch)

    def delete(self, ids: Iterable[str]) -> None:
        """Delete cases by id; ids that are not stored are ignored."""
        self._check_open()
        point_ids = _normalise_ids(ids)
        if point_ids and self._collection_dim() is not None:
            self._delete(point_ids)

    def purge_deleted(self) -> None:
        """Make deleted cases unrecoverable from the engine's files, not only invisible to queries.

        An engine deletes by marking: the payload (caption, ids) stays in its storage pages and in its
        write-ahead log until they are rewritten. Erasure calls this after deleting, so that "deleted"
        means gone from the data directory. A no-op where the engine's files are not ours (a Qdrant
        server vacuums its own segments).
        """
        self._check_open()
        if self._collection_dim() is not None:
            self._purge_deleted()

    def delete_where(
        self, *, author_id: int | None = None, guild_id: int | None = None, scope: Scope | None = None
    ) -> list[str]:
        """Delete every case matching all the given fields; return the deleted ids (sorted).

        Withdrawal needs the ids to remove thumbnails too. An author or a guild is required, so that
        no call can empty the corpus by accident.
        """
        point_ids = self.ids_where(author_id=author_id, guild_id=guild_id, scope=scope)
        if point_ids:
            self._delete(point_ids)
        return point_ids

    def ids_where(
        self,
        *,
        author_id: int | None = None,
        guild_id: int | None = None,
        scope: Scope | None = None,
        message_ids: Collection[int] | None = None,
    ) -> list[str]:
        """Ids (sorted) of every case matching all the given fields; `message_ids`: any of those posts.

        Erasure reads the ids first so that it can remove thumbnails before the points: a run cut short
        in between finds the same ids again on its retry. An author, a guild or messages are required.
        """
        if author_id is None and guild_id is None and message_ids is None:
            raise ValueError("ids_where needs author_id, guild_id or message_ids")
        self._check_open()
        if self._collection_dim() is None:
            return []
        must: tuple[Condition, ...] = tuple(
            FieldMatch(key, value)
            for key, value in (("author_id", author_id), ("guild_id", guild_id), ("scope", scope))
            if value is not None
        )
        if message_ids is not None:
            must += (FieldIn("message_id", tuple(sorted(set(message_ids)))),)
        criteria = PointCriteria(must=must)
        return [] if criteria.matches_nothing else sorted(self._matching_ids(criteria))

    def rescope(
        self,
        scope: Scope,
        *,
        guild_id: int,
        author_id: int | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
    ) -> int:
        """Stamp `scope` on the guild's cases (of one author, posted in `[created_from, created_before)`,
        when given); returns how many changed. Idempotent: cases already stamped so are left alone.

        One set-payload-by-filter in the engine, however many cases match, so turning a server's
        sharing off costs the same for ten cases or a hundred thousand.
        """
        if scope not in ("server", "shared"):
            raise ValueError(f"scope must be 'server' or 'shared', got {scope!r}")
        self._check_open()
        if self._collection_dim() is None:
            return 0
        must: tuple[Condition, ...] = (FieldMatch("guild_id", guild_id),)
        if author_id is not None:
            must += (FieldMatch("author_id", author_id),)
        criteria = PointCriteria(
            must=must,
            must_not=(FieldMatch("scope", scope),),
            created_from=created_from,
            created_before=created_before,
        )
        changing = self._count(criteria)
        if changing:
            self._set_payload(criteria, {"scope": scope})
        return changing

    # -- reads ------------------------------------------------------------------------------------

    def get(self, ids: Iterable[str]) -> list[CaseRecord]:
        """Stored cases with their vectors, in the order asked; missing ids are skipped."""
        self._check_open()
        point_ids = _normalise_ids(ids)
        if not point_ids or self._collection_dim() is None:
            return []
        by_id = {record.id: record for record in self._retrieve(point_ids)}
        return [by_id[point_id] for point_id in point_ids if point_id in by_id]

    def count(self, filter: SearchFilter | None = None) -> int:
        """Number of cases, or of those a search with `filter` could return (collapsing aside)."""
        self._check_open()
        if self._collection_dim() is None:
            return 0
        criteria = None if filter is None else visibility_criteria(filter)
        return 0 if criteria is not None and criteria.matches_nothing else self._count(criteria)

    def find_by_phash(self, guild_id: int, phash: str) -> list[CaseRecord]:
        """Cases of `guild_id` with exactly this perceptual hash (candidate reposts; the caller also
        compares cosines, since a hash match alone can be a coincidence)."""
        self._check_open()
        if self._collection_dim() is None:
            return []
        criteria = PointCriteria(must=(FieldMatch("guild_id", guild_id), FieldMatch("phash", phash.lower())))
        point_ids = sorted(self._matching_ids(criteria))
        return self.get(point_ids) if point_ids else []

    def search(
        self,
        query_vector: Sequence[float] | Any,
        *,
        using: VectorName = IMAGE_VECTOR,
        k: int = 10,
        filter: SearchFilter | None,
    ) -> list[CaseHit]:
        """The `k` cases most similar to `query_vector` by the named vector, best first.

        The caller composes the mode: an image embedding with `using="image"` finds similar images, a
        text embedding with `using="image"` finds images matching a description, an image embedding
        with `using="text"` finds cases whose captions match the image. `filter` is required so that
        forgetting the guild rule is impossible; pass None only where every case may be seen (admin
        tools, benchmarks).
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if using not in ("image", "text"):
            raise ValueError(f"using must be 'image' or 'text', got {using!r}")
        vector = as_vector(query_vector, "query_vector")
        self._check_open()
        dim = self._collection_dim()
        if dim is None:
            return []
        if len(vector) != dim:
            raise ValueError(f"query_vector has {len(vector)} dimensions, the collection {dim}")
        if filter is None:
            return [candidate.hit() for candidate in self._ranked(vector, using, k, None, False)]
        # The own post is dropped here rather than by a `must_not`, which roughly doubles qdrant-edge's
        # filtered search time; a post has at most MAX_ATTACHMENTS_PER_MESSAGE cases to skip.
        criteria = visibility_criteria(filter, exclude_own_message=False)
        if criteria.matches_nothing:
            return []
        own_message = filter.exclude_message_id
        threshold = filter.collapse_cosine
        limit = k * (1 if threshold is None else COLLAPSE_OVERFETCH)
        limit += 0 if own_message is None else MAX_ATTACHMENTS_PER_MESSAGE
        cap = max(MAX_CANDIDATES, limit)
        while True:
            candidates = self._ranked(vector, using, limit, criteria, threshold is not None)
            others = [c for c in candidates if own_message is None or c.message_id != own_message]
            if threshold is None:
                hits = [candidate.hit() for candidate in others[:k]]
            else:
                hits = collapse_near_duplicates(others, threshold, k)
            if len(hits) == k or len(candidates) < limit or limit >= cap:
                return hits
            limit = min(limit * REFETCH_GROWTH, cap)

    # -- helpers ----------------------------------------------------------------------------------

    def _ranked(
        self,
        vector: Vector,
        using: VectorName,
        limit: int,
        criteria: PointCriteria | None,
        with_image_vector: bool,
    ) -> list[ScoredCandidate]:
        # Equal scores are ordered by id so both engines agree on ties.
        candidates = self._query(vector, using, limit, criteria, with_image_vector)
        return sorted(candidates, key=lambda candidate: (-candidate.score, candidate.id))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("The case store is closed.")

    def _check_record(self, record: CaseRecord, dim: int) -> None:
        if (record.payload.model, record.payload.revision) != (self.model_name, self.revision):
            raise ValueError(
                f"case {record.id} was embedded by {record.payload.model}@{record.payload.revision}, "
                f"this store holds {self.model_name}@{self.revision}"
            )
        if len(record.image_vector) != dim:
            raise ValueError(
                f"case {record.id} has {len(record.image_vector)}-d vectors, the collection {dim}"
            )
        _normalise_ids([record.id])

    # -- what a backend implements ---------------------------------------------------------------

    @abstractmethod
    def _collection_dim(self) -> int | None:
        """Dimension of the existing collection, None if there is none."""

    @abstractmethod
    def _create_collection(self, dim: int) -> None:
        """Create the collection with named cosine vectors `image` and `text` of `dim`."""

    @abstractmethod
    def _ensure_payload_indexes(self) -> None:
        """Create the indexes of `INDEXED_FIELDS` that do not exist yet."""

    @abstractmethod
    def _upsert(self, records: Sequence[CaseRecord]) -> None:
        """Write one batch of checked records."""

    @abstractmethod
    def _retrieve(self, ids: Sequence[str]) -> list[CaseRecord]:
        """Stored records (with vectors) among `ids`, any order."""

    @abstractmethod
    def _count(self, criteria: PointCriteria | None) -> int:
        """Exact number of points matching `criteria` (all when None)."""

    @abstractmethod
    def _delete(self, ids: Sequence[str]) -> None:
        """Delete these ids; unknown ones are ignored."""

    @abstractmethod
    def _purge_deleted(self) -> None:
        """Rewrite storage without deleted points, where the engine's files are ours."""

    @abstractmethod
    def _set_payload(self, criteria: PointCriteria, payload: dict[str, Any]) -> None:
        """Set these payload fields on every point matching `criteria` (the engine's set-by-filter)."""

    @abstractmethod
    def _matching_ids(self, criteria: PointCriteria) -> list[str]:
        """Every id matching `criteria` (paged through however many there are)."""

    @abstractmethod
    def _query(
        self,
        vector: Vector,
        using: VectorName,
        limit: int,
        criteria: PointCriteria | None,
        with_image_vector: bool,
    ) -> list[ScoredCandidate]:
        """Nearest `limit` points by cosine on the named vector, with payloads."""

    def _optimize(self) -> None:  # noqa: B027 - engines that index in the background need nothing
        """Build the vector index of points not indexed yet, blocking until done."""

    @abstractmethod
    def _close(self) -> None:
        """Release engine resources."""
