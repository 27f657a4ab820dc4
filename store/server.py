"""`ServerCaseStore`: cases in a Qdrant server (production: several bot and worker processes share it).

The store takes a ready `QdrantClient`, so tests hand it `QdrantClient(":memory:")` and exercise the
very code that talks to a remote server; `connect()` builds the remote client from settings. Every
client call goes through `server_errors`, which turns "cannot reach Qdrant" into
`ServiceUnavailableError` and any other refusal into `StoreError`, so no raw client error reaches people.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar

import grpc
import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from plipbot.errors import ServiceUnavailableError, StoreError
from store.base import (
    INDEXED_FIELDS,
    AllOf,
    CaseStore,
    Condition,
    FieldIn,
    PayloadKind,
    PointCriteria,
    ScoredCandidate,
)
from store.records import (
    IMAGE_VECTOR,
    TEXT_VECTOR,
    CasePayload,
    CaseRecord,
    ModelIdentity,
    Vector,
    VectorName,
    as_vector,
)
from store.tuning import (
    FULL_SCAN_THRESHOLD_KB,
    HNSW_EF_CONSTRUCT,
    HNSW_LINKED_FIELDS,
    HNSW_M,
    HNSW_PAYLOAD_M,
    QUANTIZATION_QUANTILE,
    RESCORE_OVERSAMPLING,
    SEARCH_HNSW_EF,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

UNREACHABLE_MESSAGE = "The case store (Qdrant) is unreachable; try again later."

_SCROLL_PAGE = 1000
_HTTP_CONFLICT = 409
_HTTP_UNAUTHORISED = (401, 403)
_UNAVAILABLE_GRPC_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)

_SEARCH_PARAMS = models.SearchParams(
    hnsw_ef=SEARCH_HNSW_EF,
    quantization=models.QuantizationSearchParams(rescore=True, oversampling=RESCORE_OVERSAMPLING),
)


def _index_schema(field_name: str, kind: PayloadKind) -> models.PayloadSchemaParams:
    """Payload index parameters: per-value HNSW links only for the fields every search filters on."""
    linked = field_name in HNSW_LINKED_FIELDS
    if kind == "integer":
        return models.IntegerIndexParams(
            type=models.IntegerIndexType.INTEGER, lookup=True, range=False, enable_hnsw=linked
        )
    if kind == "keyword":
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=linked)
    return models.DatetimeIndexParams(type=models.DatetimeIndexType.DATETIME, enable_hnsw=linked)


def server_errors(call: Callable[[], T], action: str) -> T:
    """Run a client call; map transport failures to `ServiceUnavailableError`, refusals to `StoreError`."""
    try:
        return call()
    except (httpx.TransportError, ResourceExhaustedResponse) as err:
        log.warning("Qdrant unreachable during %s: %s", action, err)
        raise ServiceUnavailableError(UNREACHABLE_MESSAGE) from err
    except ResponseHandlingException as err:
        # The client wraps transport errors (refused, timed out) and unparsable responses alike.
        log.warning("Qdrant request failed during %s: %r", action, err.source)
        if isinstance(err.source, httpx.TransportError | OSError):
            raise ServiceUnavailableError(UNREACHABLE_MESSAGE) from err
        raise StoreError("The case store (Qdrant) sent an answer we cannot read.") from err
    except UnexpectedResponse as err:
        # The status, not the response body: Qdrant may quote what it was sent (a case's payload).
        log.warning("Qdrant refused %s: HTTP %s", action, err.status_code)
        if err.status_code is not None and err.status_code >= 500:
            raise ServiceUnavailableError(UNREACHABLE_MESSAGE) from err
        if err.status_code in _HTTP_UNAUTHORISED:
            raise StoreError("The case store (Qdrant) rejected our API key.") from err
        raise StoreError(f"The case store (Qdrant) refused to {action}.") from err
    except grpc.RpcError as err:
        code = err.code() if callable(getattr(err, "code", None)) else None  # type: ignore[attr-defined]
        log.warning("Qdrant gRPC error during %s: %s", action, code)
        if code in _UNAVAILABLE_GRPC_CODES:
            raise ServiceUnavailableError(UNREACHABLE_MESSAGE) from err
        raise StoreError(f"The case store (Qdrant) refused to {action}.") from err


def _match(condition: Condition) -> models.FieldCondition | models.Filter:
    if isinstance(condition, AllOf):
        return models.Filter(must=[_match(part) for part in condition.conditions])
    if isinstance(condition, FieldIn):
        return models.FieldCondition(key=condition.key, match=models.MatchAny(any=list(condition.values)))
    return models.FieldCondition(key=condition.key, match=models.MatchValue(value=condition.value))


def _server_filter(criteria: PointCriteria | None) -> models.Filter | None:
    """`PointCriteria` in qdrant-client's filter models."""
    if criteria is None:
        return None
    must: list[Any] = [_match(condition) for condition in criteria.must]
    if criteria.created_from is not None or criteria.created_before is not None:
        must.append(
            models.FieldCondition(
                key="created_at",
                range=models.DatetimeRange(
                    gte=None if criteria.created_from is None else criteria.created_from.astimezone(UTC),
                    lt=None if criteria.created_before is None else criteria.created_before.astimezone(UTC),
                ),
            )
        )
    should: list[Any] = [_match(condition) for condition in criteria.should]
    must_not: list[Any] = [_match(condition) for condition in criteria.must_not]
    return models.Filter(must=must or None, should=should or None, must_not=must_not or None)


def _record(point: models.Record) -> CaseRecord:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    return CaseRecord(
        id=str(point.id),
        payload=CasePayload.from_storage(point.payload or {}),
        image_vector=vectors[IMAGE_VECTOR],  # type: ignore[arg-type]
        text_vector=vectors.get(TEXT_VECTOR),  # type: ignore[arg-type]
    )


class ServerCaseStore(CaseStore):
    """Cases of one model in a collection of a Qdrant server reached through `client`.

    `close()` closes the client only when the store owns it (`connect()` builds one it owns; a client
    passed in belongs to the caller, who may share it between stores). The collection's dimension is
    read once and cached, so steady-state calls cost one request each.
    """

    upsert_batch_size = 128

    def __init__(self, client: QdrantClient, model: ModelIdentity, *, owns_client: bool = False) -> None:
        super().__init__(model)
        self._client = client
        self._owns_client = owns_client
        self._dim: int | None = None
        options = client.init_options
        # Local mode (tests' ":memory:") searches by brute force and warns about search params.
        local = options.get("location") == ":memory:" or options.get("path") is not None
        self._search_params = None if local else _SEARCH_PARAMS

    @classmethod
    def connect(
        cls, url: str, model: ModelIdentity, *, api_key: str | None = None, timeout_s: float = 10.0
    ) -> ServerCaseStore:
        """A store on the server at `url`. Nothing is sent until the first call, so a server that is
        down at start-up surfaces as `ServiceUnavailableError` on use, not as a crash at boot."""
        client = QdrantClient(
            url=url, api_key=api_key, timeout=max(1, math.ceil(timeout_s)), check_compatibility=False
        )
        return cls(client, model, owns_client=True)

    # -- CaseStore primitives ---------------------------------------------------------------------

    def _collection_dim(self) -> int | None:
        if self._dim is None:
            if not server_errors(lambda: self._client.collection_exists(self.collection), "look up"):
                return None
            info = server_errors(lambda: self._client.get_collection(self.collection), "look up")
            vectors = info.config.params.vectors
            if not isinstance(vectors, dict) or IMAGE_VECTOR not in vectors:
                raise StoreError(f"The Qdrant collection {self.collection} is not a case collection.")
            self._dim = vectors[IMAGE_VECTOR].size
        return self._dim

    def _create_collection(self, dim: int) -> None:
        vector_params = models.VectorParams(size=dim, distance=models.Distance.COSINE)
        try:
            server_errors(
                lambda: self._client.create_collection(
                    self.collection,
                    vectors_config={IMAGE_VECTOR: vector_params, TEXT_VECTOR: vector_params},
                    hnsw_config=models.HnswConfigDiff(
                        m=HNSW_M,
                        ef_construct=HNSW_EF_CONSTRUCT,
                        full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
                        payload_m=HNSW_PAYLOAD_M,
                    ),
                    quantization_config=models.ScalarQuantization(
                        scalar=models.ScalarQuantizationConfig(
                            type=models.ScalarType.INT8, quantile=QUANTIZATION_QUANTILE, always_ram=True
                        )
                    ),
                ),
                "create the collection",
            )
        except StoreError as err:
            # Another worker may have created it first (409); its dimension is checked below.
            if (
                not isinstance(err.__cause__, UnexpectedResponse)
                or err.__cause__.status_code != _HTTP_CONFLICT
            ):
                raise
        existing = self._collection_dim()
        if existing != dim:
            raise StoreError(
                f"The case collection {self.collection} holds {existing}-dimensional vectors, not {dim}."
            )

    def _ensure_payload_indexes(self) -> None:
        info = server_errors(lambda: self._client.get_collection(self.collection), "look up")
        for field_name, kind in INDEXED_FIELDS.items():
            if field_name not in info.payload_schema:
                server_errors(
                    lambda field_name=field_name, kind=kind: self._client.create_payload_index(
                        self.collection, field_name, _index_schema(field_name, kind), wait=True
                    ),
                    "index",
                )

    def _upsert(self, records: Sequence[CaseRecord]) -> None:
        points = [
            models.PointStruct(id=record.id, vector=record.vectors(), payload=record.payload.to_storage())
            for record in records
        ]
        server_errors(lambda: self._client.upsert(self.collection, points=points, wait=True), "write")

    def _retrieve(self, ids: Sequence[str]) -> list[CaseRecord]:
        points = server_errors(
            lambda: self._client.retrieve(
                self.collection, ids=list(ids), with_payload=True, with_vectors=True
            ),
            "read",
        )
        return [_record(point) for point in points]

    def _count(self, criteria: PointCriteria | None) -> int:
        result = server_errors(
            lambda: self._client.count(self.collection, count_filter=_server_filter(criteria), exact=True),
            "count",
        )
        return result.count

    def _delete(self, ids: Sequence[str]) -> None:
        selector = models.PointIdsList(points=list(ids))
        server_errors(
            lambda: self._client.delete(self.collection, points_selector=selector, wait=True), "delete"
        )

    def _purge_deleted(self) -> None:
        """Nothing to do: a Qdrant server's optimizer vacuums segments with deleted points itself
        (its `vacuum_min_vector_number` / `deleted_threshold`), and its files are not ours to rewrite."""

    def _set_payload(self, criteria: PointCriteria, payload: dict[str, Any]) -> None:
        selector = models.FilterSelector(filter=_server_filter(criteria))
        server_errors(
            lambda: self._client.set_payload(self.collection, payload=payload, points=selector, wait=True),
            "write",
        )

    def _matching_ids(self, criteria: PointCriteria) -> list[str]:
        server_filter = _server_filter(criteria)
        found: list[str] = []
        offset: Any = None
        while True:
            page, offset = server_errors(
                lambda offset=offset: self._client.scroll(
                    self.collection,
                    scroll_filter=server_filter,
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=False,
                    with_vectors=False,
                ),
                "scroll",
            )
            found.extend(str(point.id) for point in page)
            if offset is None:
                return found

    def _query(
        self,
        vector: Vector,
        using: VectorName,
        limit: int,
        criteria: PointCriteria | None,
        with_image_vector: bool,
    ) -> list[ScoredCandidate]:
        response = server_errors(
            lambda: self._client.query_points(
                self.collection,
                query=vector.tolist(),
                using=using,
                limit=limit,
                query_filter=_server_filter(criteria),
                search_params=self._search_params,
                with_payload=True,
                with_vectors=[IMAGE_VECTOR] if with_image_vector else False,
            ),
            "search",
        )
        candidates = []
        for point in response.points:
            image_vector = None
            if with_image_vector and isinstance(point.vector, dict):
                image_vector = as_vector(point.vector[IMAGE_VECTOR], "image_vector")  # type: ignore[arg-type]
            candidates.append(
                ScoredCandidate(
                    id=str(point.id),
                    score=float(point.score),
                    stored_payload=point.payload or {},
                    image_vector=image_vector,
                )
            )
        return candidates

    def _close(self) -> None:
        if not self._owns_client:
            return
        try:
            self._client.close()
        except Exception as err:  # closing must not hide why we are shutting down
            log.warning("closing the Qdrant client failed: %s", err)
