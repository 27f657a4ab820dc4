"""The embedded store builds and uses its vector index (HNSW + int8 quantization, `store.tuning`).

qdrant-edge runs no optimizer by itself, so these check that our store does: on a bulk `optimize()`,
by itself once enough points wait, and on shards created before the index configuration existed.
Small sizes only; the speed and the recall at 208k cases are measured by `bench/store_bench.py`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe

import store.edge
from store import CasePayload, CaseRecord, ModelKey, SearchFilter, import_point_id
from store.edge import EdgeCaseStore

MODEL = ModelKey("tuning", "0" * 8)
DIM = 32
N = 600
GUILDS = 3
ALL_GUILDS = frozenset(range(1, GUILDS + 1))


def _records(vectors: np.ndarray) -> list[CaseRecord]:
    return [
        CaseRecord(
            id=import_point_id("tuning", f"{row}.png"),
            payload=CasePayload(
                guild_id=1 + row % GUILDS,
                message_id=row,
                created_at=datetime(2024, 1, 1, tzinfo=UTC),
                scope="shared" if row % 10 == 0 else "server",
                phash=f"{row:016x}",
                model=MODEL.name,
                revision=MODEL.revision,
            ),
            image_vector=vectors[row],
        )
        for row in range(len(vectors))
    ]


def _unit_rows(seed: int, n: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _exact_top(vectors: np.ndarray, query: np.ndarray, guild: int, k: int) -> list[str]:
    rows = np.arange(len(vectors))
    visible = (1 + rows % GUILDS == guild) | (rows % 10 == 0)
    scores = np.where(visible, vectors @ query, -np.inf)
    return [import_point_id("tuning", f"{row}.png") for row in np.argsort(-scores)[:k]]


@pytest.fixture
def tiny_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index even a few hundred points, so the test exercises the graph and not brute force."""
    monkeypatch.setattr(store.edge, "AUTO_OPTIMIZE_POINTS", 200)
    monkeypatch.setattr(store.edge, "FULL_SCAN_THRESHOLD_KB", 1)


def _indexed(case_store: EdgeCaseStore) -> int:
    assert case_store._shard is not None
    return case_store._shard.info().indexed_vectors_count


@pytest.mark.usefixtures("tiny_thresholds")
def test_upserts_build_the_index_and_searches_through_it_stay_exact(tmp_path: Path) -> None:
    vectors = _unit_rows(0, N)
    with EdgeCaseStore(tmp_path, MODEL) as case_store:
        case_store.ensure_collection(DIM)
        case_store.upsert(_records(vectors))
        assert _indexed(case_store) >= N - 200  # every full AUTO_OPTIMIZE_POINTS batch is indexed
        queries = _unit_rows(1, 20)
        for number, query in enumerate(queries):
            guild = 1 + number % GUILDS
            search_filter = SearchFilter(guild_id=guild, sharing_guilds=ALL_GUILDS)
            hits = case_store.search(query, k=5, filter=search_filter)
            assert [hit.id for hit in hits] == _exact_top(vectors, query, guild, 5)
            # Rescoring on the float vectors: the reported score is the exact cosine, not int8's.
            best = vectors[[int(hit.payload.message_id or 0) for hit in hits[:1]]][0]
            assert hits[0].score == pytest.approx(float(best @ query), abs=1e-5)


@pytest.mark.usefixtures("tiny_thresholds")
def test_optimize_indexes_what_a_bulk_write_left(tmp_path: Path) -> None:
    with EdgeCaseStore(tmp_path, MODEL) as case_store:
        case_store.ensure_collection(DIM)
        case_store.upsert(_records(_unit_rows(0, 150)))  # below the automatic threshold
        assert _indexed(case_store) == 0
        case_store.optimize()
        assert _indexed(case_store) == 150


@pytest.mark.usefixtures("tiny_thresholds")
def test_a_shard_from_before_the_index_gets_it_when_opened(tmp_path: Path) -> None:
    path = tmp_path / EdgeCaseStore(tmp_path, MODEL).collection
    plain = qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)
    old = qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors={"image": plain, "text": plain}))
    points = [
        qe.Point(record.id, record.vectors(), record.payload.to_storage())
        for record in _records(_unit_rows(0, 300))
    ]
    old.update(qe.UpdateOperation.upsert_points(points))
    old.flush()
    old.close()

    with EdgeCaseStore(tmp_path, MODEL) as case_store:
        config = json.loads((path / "edge_config.json").read_text())
        assert config["hnsw_config"]["m"] == store.edge.HNSW_M
        assert config["quantization_config"]["scalar"]["type"] == "int8"
        assert _indexed(case_store) == 300  # 300 unindexed >= the threshold: indexed on opening
        assert case_store.count() == 300


@pytest.mark.usefixtures("tiny_thresholds")
def test_bulk_writes_index_once_at_the_end(tmp_path: Path) -> None:
    vectors = _unit_rows(0, N)
    with EdgeCaseStore(tmp_path, MODEL) as case_store:
        case_store.ensure_collection(DIM)
        with case_store.bulk_writes():
            case_store.upsert(_records(vectors))
            assert _indexed(case_store) == 0  # past the automatic threshold, yet deferred
            hits = case_store.search(vectors[7], k=1, filter=None)  # brute force meanwhile
            assert hits[0].id == import_point_id("tuning", "7.png")
        assert _indexed(case_store) == N
