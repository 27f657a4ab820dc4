"""Benchmark the embedded case store (qdrant-edge) against numpy brute force on the same vectors.

Answers "is the embedded default fast enough, and how far from the floor is it?": upsert throughput,
top-10 latency (p50/p95) with and without the guild filter, reopen time, and the same top-10 computed
by numpy in the same process. Also checks that both return the same ids (the edge search is exact).
Not run by the tests. Usage:

    .venv/bin/python bench/store_bench.py --sizes 10000 200000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from store.edge import EdgeCaseStore
from store.ids import import_point_id
from store.records import CasePayload, CaseRecord, ModelKey, SearchFilter

MODEL = ModelKey("bench", "0" * 8)
K = 10
CHUNK = 4096
CREATED_AT = datetime(2024, 1, 1, tzinfo=UTC)
LABELS = ("all", "guild", "bot")
"""Searches timed: no filter; the guild rule; the bot's query (guild rule, skip own post, collapse 0.95)."""


@dataclass(frozen=True)
class Corpus:
    """Random unit vectors with the payload fields the guild filter reads."""

    vectors: np.ndarray  # (n, dim) float32, L2-normalised
    guilds: np.ndarray  # (n,) int64
    shared: np.ndarray  # (n,) bool


@dataclass
class Result:
    size: int
    build_s: float = 0.0
    upsert_s: float = 0.0
    reopen_s: float = 0.0
    edge_ms: dict[str, list[float]] | None = None
    numpy_ms: dict[str, list[float]] | None = None
    agreement: dict[str, float] | None = None


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def make_corpus(rng: np.random.Generator, n: int, dim: int, guilds: int, shared_fraction: float) -> Corpus:
    return Corpus(
        vectors=unit_rows(rng, n, dim),
        guilds=rng.integers(1, guilds + 1, size=n),
        shared=rng.random(n) < shared_fraction,
    )


def records(corpus: Corpus, start: int, stop: int) -> list[CaseRecord]:
    return [
        CaseRecord(
            id=import_point_id("bench", f"{row}.png"),
            payload=CasePayload(
                guild_id=int(corpus.guilds[row]),
                message_id=row,
                author_id=row % 997,
                created_at=CREATED_AT,
                source="import",
                scope="shared" if corpus.shared[row] else "server",
                phash=f"{row:016x}",
                model=MODEL.name,
                revision=MODEL.revision,
            ),
            image_vector=corpus.vectors[row],
        )
        for row in range(start, stop)
    ]


def numpy_top_k(corpus: Corpus, query: np.ndarray, guild: int | None, own_row: int | None) -> list[int]:
    """Brute force: every cosine, the guild rule (and own post) as a mask, then a partial sort."""
    scores = corpus.vectors @ query
    if guild is not None:
        scores = np.where((corpus.guilds == guild) | corpus.shared, scores, -np.inf)
    if own_row is not None:
        scores[own_row] = -np.inf
    top = np.argpartition(-scores, K)[:K]
    return top[np.argsort(-scores[top], kind="stable")].tolist()


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return (time.perf_counter() - started) * 1000.0, value


def chunks(n: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, CHUNK):
        yield start, min(start + CHUNK, n)


def run_size(args: argparse.Namespace, size: int, workdir: Path) -> Result:
    rng = np.random.default_rng(args.seed)
    corpus = make_corpus(rng, size, args.dim, args.guilds, args.shared_fraction)
    queries = unit_rows(rng, args.queries, args.dim)
    query_guilds = rng.integers(1, args.guilds + 1, size=args.queries)
    own_rows = rng.integers(0, size, size=args.queries)  # the bot's query skips its own post
    id_of_row = {import_point_id("bench", f"{row}.png"): row for row in range(size)}
    result = Result(size=size)
    root = workdir / f"n{size}"

    store = EdgeCaseStore(root, MODEL)
    store.ensure_collection(args.dim)
    for start, stop in chunks(size):
        began = time.perf_counter()
        batch = records(corpus, start, stop)
        built = time.perf_counter()
        store.upsert(batch)
        result.build_s += built - began
        result.upsert_s += time.perf_counter() - built
    store.close()

    began = time.perf_counter()
    store = EdgeCaseStore(root, MODEL)
    assert store.count() == size
    result.reopen_s = time.perf_counter() - began

    result.edge_ms = {label: [] for label in LABELS}
    result.numpy_ms = {label: [] for label in LABELS}
    matches = dict.fromkeys(LABELS, 0)
    for query, guild, own_row in zip(queries, query_guilds, own_rows, strict=True):
        bot_filter = SearchFilter(guild_id=int(guild), exclude_message_id=int(own_row), collapse_cosine=0.95)
        for label, search_filter in (
            ("all", None),
            ("guild", SearchFilter(guild_id=int(guild))),
            ("bot", bot_filter),
        ):
            guild_id = None if search_filter is None else search_filter.guild_id
            own = int(own_row) if label == "bot" else None
            edge_ms, hits = timed(lambda q=query, f=search_filter: store.search(q, k=K, filter=f))
            numpy_ms, rows = timed(lambda q=query, g=guild_id, o=own: numpy_top_k(corpus, q, g, o))
            result.edge_ms[label].append(edge_ms)
            result.numpy_ms[label].append(numpy_ms)
            matches[label] += [id_of_row[hit.id] for hit in hits] == rows  # type: ignore[union-attr]
    store.close()
    result.agreement = {label: count / args.queries for label, count in matches.items()}
    shutil.rmtree(root, ignore_errors=True)
    return result


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def print_table(results: list[Result], dim: int) -> None:
    header = (
        f"{'n':>8} {'filter':>6} | {'upsert/s':>9} {'build s':>7} {'upsert s':>8} {'reopen s':>8} | "
        f"{'edge p50':>8} {'p95':>7} | {'numpy p50':>9} {'p95':>7} | {'edge/np':>7} {'same top10':>10}"
    )
    print(f"edge backend, {dim}-d cosine, top-{K}, latencies in ms")
    print(header)
    print("-" * len(header))
    for result in results:
        assert result.edge_ms and result.numpy_ms and result.agreement
        for label in LABELS:
            edge_p50 = percentile(result.edge_ms[label], 50)
            numpy_p50 = percentile(result.numpy_ms[label], 50)
            write_columns = (
                f"{result.size / result.upsert_s:>9.0f} {result.build_s:>7.2f} {result.upsert_s:>8.2f} "
                f"{result.reopen_s:>8.2f}"
                if label == "all"
                else f"{'':>9} {'':>7} {'':>8} {'':>8}"
            )
            print(
                f"{result.size:>8} {label:>6} | {write_columns} | "
                f"{edge_p50:>8.2f} {percentile(result.edge_ms[label], 95):>7.2f} | "
                f"{numpy_p50:>9.2f} {percentile(result.numpy_ms[label], 95):>7.2f} | "
                f"{edge_p50 / numpy_p50:>7.2f} {result.agreement[label]:>10.0%}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200, help="queries per size and filter")
    parser.add_argument("--guilds", type=int, default=20, help="guilds the cases are spread over")
    parser.add_argument("--shared-fraction", type=float, default=0.1, help="share of cases with scope shared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where shards go (default: a temp dir)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="plipbot-store-bench-"))
    try:
        results = []
        for size in args.sizes:
            results.append(run_size(args, size, workdir))
            print(f"done n={size}", flush=True)
        print_table(results, args.dim)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
