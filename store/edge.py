"""`EdgeCaseStore`: the embedded default, Qdrant's engine in-process through qdrant-edge-py.

No server to run: a single-guild or laptop install keeps its corpus in a folder under the data dir.
One shard (folder) per model collection, `root / collection_name`. qdrant-edge locks a shard's
write-ahead log, so only one process may open it; a second one gets a `StoreError` saying so.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import qdrant_edge as qe

from plipbot.errors import StoreError
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
)
from store.tuning import (
    AUTO_OPTIMIZE_POINTS,
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

_CONFIG_FILE = "edge_config.json"  # written by qdrant-edge into every shard folder
_SCROLL_PAGE = 1000
_LOCKED_MARKER = "WouldBlock"  # how qdrant-edge reports a WAL held by another process

_SEARCH_PARAMS = qe.SearchParams(
    hnsw_ef=SEARCH_HNSW_EF,
    quantization=qe.QuantizationSearchParams(rescore=True, oversampling=RESCORE_OVERSAMPLING),
)


def shard_config(dim: int) -> qe.EdgeConfig:
    """The shard's vectors and how they are indexed (see `store.tuning`): cosine `image` and `text`
    vectors, an HNSW graph and int8 scalar quantization built by `EdgeShard.optimize`."""
    vector_params = qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)
    return qe.EdgeConfig(
        vectors={IMAGE_VECTOR: vector_params, TEXT_VECTOR: vector_params},
        hnsw_config=qe.HnswIndexConfig(
            m=HNSW_M,
            ef_construct=HNSW_EF_CONSTRUCT,
            full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
            payload_m=HNSW_PAYLOAD_M,
        ),
        quantization_config=qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=QUANTIZATION_QUANTILE, always_ram=True
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=FULL_SCAN_THRESHOLD_KB),
    )


def _index_schema(field_name: str, kind: PayloadKind) -> qe.PayloadSchemaType | Any:
    """Payload index parameters: per-value HNSW links only for the fields every search filters on."""
    linked = field_name in HNSW_LINKED_FIELDS
    if kind == "integer":
        return qe.IntegerIndexParams(lookup=True, range=False, enable_hnsw=linked)
    if kind == "keyword":
        return qe.KeywordIndexParams(enable_hnsw=linked)
    return qe.DatetimeIndexParams(enable_hnsw=linked)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _match(condition: Condition) -> qe.FieldCondition | qe.Filter:
    if isinstance(condition, AllOf):
        return qe.Filter(must=[_match(part) for part in condition.conditions])
    if isinstance(condition, FieldIn):
        return qe.FieldCondition(condition.key, match=qe.MatchAny(list(condition.values)))
    return qe.FieldCondition(condition.key, match=qe.MatchValue(condition.value))


def _edge_filter(criteria: PointCriteria | None) -> qe.Filter | None:
    """`PointCriteria` in qdrant-edge's filter types."""
    if criteria is None:
        return None
    must: list[Any] = [_match(condition) for condition in criteria.must]
    if criteria.created_from is not None or criteria.created_before is not None:
        must.append(
            qe.FieldCondition(
                "created_at",
                range=qe.RangeDateTime(
                    gte=None if criteria.created_from is None else _rfc3339(criteria.created_from),
                    lt=None if criteria.created_before is None else _rfc3339(criteria.created_before),
                ),
            )
        )
    should: list[Any] = [_match(condition) for condition in criteria.should]
    must_not: list[Any] = [_match(condition) for condition in criteria.must_not]
    return qe.Filter(must=must or None, should=should or None, must_not=must_not or None)


def _record(point: Any) -> CaseRecord:
    vectors = point.vector or {}
    return CaseRecord(
        id=str(point.id),
        payload=CasePayload.from_storage(point.payload or {}),
        image_vector=vectors[IMAGE_VECTOR],
        text_vector=vectors.get(TEXT_VECTOR),
    )


class EdgeCaseStore(CaseStore):
    """Cases of one model in a qdrant-edge shard at `root / collection_name(model)`.

    Opening an existing shard happens here, so a second process fails at start-up rather than on its
    first write. qdrant-edge has no background optimizer, so this store runs it: `optimize()` builds
    the HNSW graph and int8 quantization (see `store.tuning`) of points not indexed yet, and an upsert
    does so itself once `AUTO_OPTIMIZE_POINTS` wait (about 10 s per 10k on 2 cores when it merges into
    a 200k-case segment). Until then new points are searched by brute force, which is exact and cheap
    at that size. Opening a shard applies the current index configuration to it (older shards were
    created without one) and indexes it if too much is unindexed, so the first search is fast.
    """

    upsert_batch_size = 1024

    def __init__(self, root: Path, model: ModelIdentity) -> None:
        super().__init__(model)
        self.path = Path(root) / self.collection
        self._shard: qe.EdgeShard | None = None
        self._dim: int | None = None
        # A purge swaps the shard: every engine call resolves `_open_shard` under this lock, so none
        # can run on the shard being closed (the bot's threads and the embedded worker share a store).
        self._lock = threading.RLock()
        self._recover_interrupted_purge()
        self._unindexed = 0  # points written since the last optimize, a lower bound after reopening
        if (self.path / _CONFIG_FILE).exists():
            self._dim = self._read_dim()
            config = shard_config(self._dim)
            self._shard = self._engine(lambda: qe.EdgeShard.load(str(self.path), config), "open")
            info = self._engine(self._shard.info, "inspect")
            # Counts both named vectors, so this underestimates where cases have captions.
            self._unindexed = max(0, info.points_count - info.indexed_vectors_count)
            self._optimize_if_due()

    # -- engine plumbing --------------------------------------------------------------------------

    def _engine(self, call: Callable[[], T], action: str) -> T:
        """Run a qdrant-edge call, turning its errors into `StoreError`.

        qdrant-edge raises plain `Exception` for every engine failure; any other exception type comes
        from our own code or arguments and is left alone, so bugs still surface as bugs.
        """
        try:
            with self._lock:
                return call()
        except Exception as err:
            if type(err) is not Exception:
                raise
            # The engine's message can quote stored payload (captions): its text only at debug.
            log.warning("qdrant-edge failed to %s %s", action, self.path)
            log.debug("qdrant-edge error: %s", err)
            if _LOCKED_MARKER in str(err):
                raise StoreError(
                    f"The case store at {self.path} is open in another process; only one may use it."
                ) from err
            raise StoreError(f"The embedded case store failed to {action} its data.") from err

    def _read_dim(self) -> int:
        try:
            config = json.loads((self.path / _CONFIG_FILE).read_text(encoding="utf-8"))
            return int(config["vectors"][IMAGE_VECTOR]["size"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("unreadable shard config in %s: %s", self.path, err)
            raise StoreError(f"The case store at {self.path} is damaged or not a case store.") from err

    @property
    def _open_shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise StoreError(f"The case collection {self.collection} does not exist yet.")
        return self._shard

    # -- CaseStore primitives ---------------------------------------------------------------------

    def _collection_dim(self) -> int | None:
        return self._dim

    def _create_collection(self, dim: int) -> None:
        config = shard_config(dim)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"Cannot create the case store folder {self.path.parent}.") from err
        self._shard = self._engine(lambda: qe.EdgeShard.create(str(self.path), config), "create")
        self._dim = dim

    def _ensure_payload_indexes(self) -> None:
        existing = self._engine(lambda: self._open_shard.info().payload_schema, "inspect")
        for field_name, kind in INDEXED_FIELDS.items():
            if field_name not in existing:
                operation = qe.UpdateOperation.create_field_index(field_name, _index_schema(field_name, kind))
                self._engine(lambda operation=operation: self._open_shard.update(operation), "index")

    def _upsert(self, records: Sequence[CaseRecord]) -> None:
        points = [qe.Point(record.id, record.vectors(), record.payload.to_storage()) for record in records]
        self._engine(lambda: self._open_shard.update(qe.UpdateOperation.upsert_points(points)), "write")
        self._unindexed += len(points)
        self._optimize_if_due()

    def _optimize_if_due(self) -> None:
        if self._unindexed >= AUTO_OPTIMIZE_POINTS and not self._bulk_depth:
            self._optimize()

    def _optimize(self) -> None:
        pending, started = self._unindexed, time.perf_counter()
        self._engine(lambda: self._open_shard.optimize(), "index")
        self._unindexed = 0
        log.info(
            "indexed the case store %s (%d new points) in %.1f s",
            self.collection,
            pending,
            time.perf_counter() - started,
        )

    def _retrieve(self, ids: Sequence[str]) -> list[CaseRecord]:
        points = self._engine(
            lambda: self._open_shard.retrieve(list(ids), with_payload=True, with_vector=True), "read"
        )
        return [_record(point) for point in points]

    def _count(self, criteria: PointCriteria | None) -> int:
        request = qe.CountRequest(exact=True, filter=_edge_filter(criteria))
        return self._engine(lambda: self._open_shard.count(request), "count")

    def _delete(self, ids: Sequence[str]) -> None:
        self._engine(lambda: self._open_shard.update(qe.UpdateOperation.delete_points(list(ids))), "delete")

    def _recover_interrupted_purge(self) -> None:
        """Finish or undo a purge that a crash cut short (see `_purge_deleted`)."""
        rebuilt, retired = self._purge_paths()
        if not self.path.exists() and retired.exists():
            retired.rename(self.path)  # crashed between the two renames: the old shard is whole
        shutil.rmtree(rebuilt, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)

    def _purge_paths(self) -> tuple[Path, Path]:
        return self.path.with_name(self.path.name + ".rebuild"), self.path.with_name(self.path.name + ".old")

    def _purge_deleted(self) -> None:
        """Copy the live points into a fresh shard and swap it in, then delete the old folder.

        qdrant-edge marks deleted points and keeps their payload in its pages and its write-ahead log;
        only a rewrite drops them. The copy is built beside the shard and swapped in with two renames,
        so a crash leaves either shard whole (`_recover_interrupted_purge`). Costs a full copy: about a
        second per 10k cases on a small machine, paid only when something was erased.
        """
        rebuilt, retired = self._purge_paths()
        assert self._dim is not None
        with self._lock:
            old_shard = self._open_shard
            shutil.rmtree(rebuilt, ignore_errors=True)
            config = shard_config(self._dim)
            fresh = self._engine(lambda: qe.EdgeShard.create(str(rebuilt), config), "create")
            try:
                for field_name, kind in INDEXED_FIELDS.items():
                    operation = qe.UpdateOperation.create_field_index(
                        field_name, _index_schema(field_name, kind)
                    )
                    self._engine(lambda operation=operation: fresh.update(operation), "index")
                offset: Any = None
                while True:
                    request = qe.ScrollRequest(
                        offset=offset, limit=_SCROLL_PAGE, with_payload=True, with_vector=True
                    )
                    page, offset = self._engine(lambda request=request: old_shard.scroll(request), "scroll")
                    if page:
                        points = [qe.Point(point.id, point.vector, point.payload) for point in page]
                        self._engine(
                            lambda points=points: fresh.update(qe.UpdateOperation.upsert_points(points)),
                            "write",
                        )
                    if offset is None:
                        break
                self._engine(fresh.flush, "flush")
            finally:
                self._engine(fresh.close, "close")
            self._shard = None
            self._engine(old_shard.close, "close")
            self.path.rename(retired)
            rebuilt.rename(self.path)
            self._shard = self._engine(lambda: qe.EdgeShard.load(str(self.path), config), "open")
            shutil.rmtree(retired, ignore_errors=True)

    def _set_payload(self, criteria: PointCriteria, payload: dict[str, Any]) -> None:
        operation = qe.UpdateOperation.set_payload_by_filter(_edge_filter(criteria), payload)
        self._engine(lambda: self._open_shard.update(operation), "write")

    def _matching_ids(self, criteria: PointCriteria) -> list[str]:
        edge_filter = _edge_filter(criteria)
        found: list[str] = []
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=_SCROLL_PAGE, filter=edge_filter, with_payload=False, with_vector=False
            )
            page, offset = self._engine(lambda request=request: self._open_shard.scroll(request), "scroll")
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
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector.tolist(), using=using),
            filter=_edge_filter(criteria),
            with_payload=True,
            with_vector=[IMAGE_VECTOR] if with_image_vector else False,
            params=_SEARCH_PARAMS,
        )
        points = self._engine(lambda: self._open_shard.query(request), "search")
        # The vectors only feed the collapse's cosines: no `as_vector` checks (they come from the engine).
        return [
            ScoredCandidate(
                id=str(point.id),
                score=float(point.score),
                stored_payload=point.payload or {},
                image_vector=np.asarray(point.vector[IMAGE_VECTOR], dtype=np.float32)
                if with_image_vector
                else None,
            )
            for point in points
        ]

    def _close(self) -> None:
        shard, self._shard = self._shard, None
        if shard is not None:
            self._engine(shard.flush, "flush")
            self._engine(shard.close, "close")
