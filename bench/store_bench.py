"""Benchmark the case store's search at corpus scale: the indexed search against exact search.

Answers "does the bot's similar-case query stay fast at OpenPath's size (208k cases), and what does
the index cost?": upsert rate, index build time, reopen time, then for each search the latency
(p50/p95/p99) and recall@10 of the indexed search (HNSW + int8 quantization with rescoring, see
`store/tuning.py`) against exact search through the same store and numpy brute force, all in this
process on the same vectors.

The searches: `all` (no filter), `guild` (the privacy rule: own server or shared by a server that
shares now), `bot` (the bot's real query: the privacy rule, its own post excluded, reposts collapsed at
cosine 0.95; the query image is a case of the corpus, as an ingested post is).

The corpus is synthetic but shaped like image embeddings, not uniform noise: every vector shares a
common direction (random pairs have cosine ~0.5, as CLIP embeddings do), 50 coarse and 2,000 fine
topics (cases of one topic ~0.9), and 2% cross-server reposts (cosine ~0.98 to their original).
Uniformly random 512-d vectors have no neighbours to find and are the worst case of any graph index.

    .venv/bin/python bench/store_bench.py            # 20k cases, a few minutes on 2 cores
    .venv/bin/python bench/store_bench.py --full     # 208,414 cases (OpenPath), ~15 min on 2 cores
    .venv/bin/python bench/store_bench.py --markdown # the table as markdown (bench/run_all.py)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import qdrant_edge as qe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.machine when run as a script

import store.edge
from bench.machine import cpu_name, render_table
from store.base import COLLAPSE_OVERFETCH
from store.edge import EdgeCaseStore
from store.ids import import_point_id
from store.records import CaseHit, CasePayload, CaseRecord, ModelKey, SearchFilter
from store.similar import COLLAPSE_COSINE
from store.tuning import RESCORE_OVERSAMPLING, SEARCH_HNSW_EF

MODEL = ModelKey("bench", "0" * 8)
K = 10
CHUNK = 4096
OPENPATH_SIZE = 208_414
CREATED_AT = datetime(2024, 1, 1, tzinfo=UTC)
LABELS = ("all", "guild", "bot")
EXACT_PARAMS = qe.SearchParams(exact=True, quantization=qe.QuantizationSearchParams(ignore=True))


@dataclass(frozen=True)
class Corpus:
    """Embedding-like unit vectors with the payload fields the privacy filter reads."""

    vectors: np.ndarray  # (n, dim) float32, L2-normalised
    guilds: np.ndarray  # (n,) int64
    shared: np.ndarray  # (n,) bool: stamped scope=shared
    sharing: frozenset[int]  # servers whose sharing is on now


@dataclass
class Timings:
    ms: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)


@dataclass
class Result:
    size: int
    upsert_s: float = 0.0
    build_s: float = 0.0
    reopen_s: float = 0.0
    indexed: dict[tuple[str, int], Timings] = field(default_factory=dict)
    exact: dict[str, Timings] = field(default_factory=dict)
    numpy: dict[str, Timings] = field(default_factory=dict)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_corpus(args: argparse.Namespace, n: int, rng: np.random.Generator) -> Corpus:
    dim = args.dim

    def directions(count: int) -> np.ndarray:
        return unit(rng.standard_normal((count, dim), dtype=np.float32))

    common, coarse, fine = directions(1)[0], directions(50), directions(2000)
    fine_parent = rng.integers(0, len(coarse), len(fine))
    topic = rng.integers(0, len(fine), n)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start, stop in chunks(n):
        part = topic[start:stop]
        vectors[start:stop] = unit(
            np.sqrt(0.5) * common
            + np.sqrt(0.25) * coarse[fine_parent[part]]
            + np.sqrt(0.15) * fine[part]
            + np.sqrt(0.10) * directions(stop - start)
        )
    guilds = rng.integers(1, args.guilds + 1, size=n)
    reposts = rng.choice(np.arange(n // 2, n), size=int(n * args.repost_fraction), replace=False)
    originals = rng.integers(0, n // 2, size=len(reposts))
    vectors[reposts] = unit(vectors[originals] + 0.1 * directions(len(reposts)))  # cosine ~0.98
    guilds[reposts] = guilds[originals] % args.guilds + 1  # another server (same-server ones are refused)
    sharing = frozenset(int(g) for g in rng.choice(np.arange(1, args.guilds + 1), args.guilds // 2, False))
    return Corpus(vectors, guilds, rng.random(n) < args.shared_fraction, sharing)


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


def chunks(n: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, CHUNK):
        yield start, min(start + CHUNK, n)


def numpy_search(corpus: Corpus, query: np.ndarray, search_filter: SearchFilter | None) -> list[int]:
    """The same answer by brute force: every cosine, the privacy rule as a mask, then the collapse."""
    scores = corpus.vectors @ query
    if search_filter is not None:
        visible = (corpus.guilds == search_filter.guild_id) | (
            corpus.shared & np.isin(corpus.guilds, list(search_filter.sharing_guilds))
        )
        if search_filter.exclude_message_id is not None:
            visible[search_filter.exclude_message_id] = False  # message_id == row in this corpus
        scores = np.where(visible, scores, -np.inf)
    fetch = K * COLLAPSE_OVERFETCH if search_filter and search_filter.collapse_cosine else K
    top = np.argpartition(-scores, fetch)[:fetch]
    ranked = top[np.argsort(-scores[top], kind="stable")]
    if not (search_filter and search_filter.collapse_cosine):
        return ranked[:K].tolist()
    kept: list[int] = []
    for row in ranked:
        if not kept or float(np.max(corpus.vectors[kept] @ corpus.vectors[row])) < COLLAPSE_COSINE:
            kept.append(int(row))
        if len(kept) == K:
            break
    return kept


@contextmanager
def search_params(params: qe.SearchParams) -> Iterator[None]:
    """Searches of the edge store inside use `params` (exact: the baseline; another `hnsw_ef`)."""
    configured = store.edge._SEARCH_PARAMS
    store.edge._SEARCH_PARAMS = params
    try:
        yield
    finally:
        store.edge._SEARCH_PARAMS = configured


def with_ef(ef: int) -> qe.SearchParams:
    quantization = qe.QuantizationSearchParams(rescore=True, oversampling=RESCORE_OVERSAMPLING)
    return qe.SearchParams(hnsw_ef=ef, quantization=quantization)


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return (time.perf_counter() - started) * 1000.0, value


def filters(corpus: Corpus, guild: int, own_row: int) -> dict[str, SearchFilter | None]:
    return {
        "all": None,
        "guild": SearchFilter(guild_id=guild, sharing_guilds=corpus.sharing),
        "bot": SearchFilter(
            guild_id=guild,
            sharing_guilds=corpus.sharing,
            exclude_message_id=own_row,
            collapse_cosine=COLLAPSE_COSINE,
        ),
    }


def run_size(args: argparse.Namespace, size: int, workdir: Path) -> Result:
    rng = np.random.default_rng(args.seed)
    corpus = make_corpus(args, size, rng)
    own_rows = rng.integers(0, size, size=args.queries)  # the bot's query image is an ingested post
    row_of_id = {import_point_id("bench", f"{row}.png"): row for row in range(size)}
    result = Result(size=size)
    root = workdir / f"n{size}"

    store_ = EdgeCaseStore(root, MODEL)
    store_.ensure_collection(args.dim)
    with store_.bulk_writes():
        for start, stop in chunks(size):
            batch = records(corpus, start, stop)
            began = time.perf_counter()
            store_.upsert(batch)
            result.upsert_s += time.perf_counter() - began
        began = time.perf_counter()
    result.build_s = time.perf_counter() - began  # the one optimize() at the end of bulk_writes
    store_.close()
    print(f"  n={size}: upserts {result.upsert_s:.1f} s, index build {result.build_s:.1f} s", flush=True)

    began = time.perf_counter()
    store_ = EdgeCaseStore(root, MODEL)
    assert store_.count() == size
    result.reopen_s = time.perf_counter() - began

    for table in (result.exact, result.numpy):
        table.update({label: Timings() for label in LABELS})
    result.indexed.update({(label, ef): Timings() for label in LABELS for ef in args.ef})

    def rows(hits: object) -> list[int]:
        return [row_of_id[hit.id] for hit in hits]  # type: ignore[attr-defined]

    for _ in range(min(20, args.queries)):  # warm caches and pages
        store_.search(corpus.vectors[own_rows[0]], k=K, filter=None)
    for own_row in own_rows:
        query = corpus.vectors[own_row]
        guild = int(corpus.guilds[own_row])
        for label, search_filter in filters(corpus, guild, int(own_row)).items():

            def search(q: np.ndarray = query, f: SearchFilter | None = search_filter) -> list[CaseHit]:
                return store_.search(q, k=K, filter=f)

            with search_params(EXACT_PARAMS):
                exact_ms, exact_hits = timed(search)
            numpy_ms, numpy_rows = timed(lambda q=query, f=search_filter: numpy_search(corpus, q, f))
            truth = set(rows(exact_hits))
            measured = [
                (result.exact[label], exact_ms, list(truth)),
                (result.numpy[label], numpy_ms, numpy_rows),
            ]
            for ef in args.ef:
                with search_params(with_ef(ef)):
                    indexed_ms, indexed_hits = timed(search)
                measured.append((result.indexed[label, ef], indexed_ms, rows(indexed_hits)))
            for timings, ms, found in measured:
                timings.ms.append(ms)
                timings.recall.append(len(truth & set(found)) / max(1, len(truth)))  # type: ignore[arg-type]
    store_.close()
    shutil.rmtree(root, ignore_errors=True)
    return result


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def table_rows(results: list[Result], efs: list[int]) -> tuple[list[str], list[list[str]]]:
    header = [
        "cases", "search", "hnsw_ef", "indexed p50", "p95", "p99", "recall@10",
        "exact p50", "p99", "numpy p50", "exact/indexed", "numpy/indexed",
    ]  # fmt: skip
    body = []
    for result in results:
        for label, ef in ((label, ef) for label in LABELS for ef in efs):
            indexed, exact, numpy_ = result.indexed[label, ef], result.exact[label], result.numpy[label]
            p50 = pct(indexed.ms, 50)
            body.append(
                [
                    f"{result.size:,}",
                    label,
                    f"{ef}" + (" (default)" if ef == SEARCH_HNSW_EF else ""),
                    f"{p50:.2f}",
                    f"{pct(indexed.ms, 95):.2f}",
                    f"{pct(indexed.ms, 99):.2f}",
                    f"{statistics.fmean(indexed.recall):.4f}",
                    f"{pct(exact.ms, 50):.2f}",
                    f"{pct(exact.ms, 99):.2f}",
                    f"{pct(numpy_.ms, 50):.2f}",
                    f"{pct(exact.ms, 50) / p50:.1f}x",
                    f"{pct(numpy_.ms, 50) / p50:.1f}x",
                ]
            )
    return header, body


def write_rows(results: list[Result]) -> tuple[list[str], list[list[str]]]:
    header = ["cases", "upserts/s", "index build s", "reopen s"]
    body = [
        [f"{r.size:,}", f"{r.size / r.upsert_s:,.0f}", f"{r.build_s:.1f}", f"{r.reopen_s:.2f}"]
        for r in results
    ]
    return header, body


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    parser.add_argument("--full", action="store_true", help=f"OpenPath's size, {OPENPATH_SIZE:,} cases")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=300, help="queries per size and search")
    parser.add_argument("--guilds", type=int, default=20, help="servers the cases are spread over")
    parser.add_argument("--shared-fraction", type=float, default=0.3, help="share of cases stamped shared")
    parser.add_argument("--repost-fraction", type=float, default=0.02, help="cross-server reposts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ef", type=int, nargs="+", default=[SEARCH_HNSW_EF], help="HNSW search ef values to compare"
    )
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--workdir", type=Path, default=None, help="where shards go (default: a temp dir)")
    args = parser.parse_args()
    sizes = [OPENPATH_SIZE] if args.full else args.sizes

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="plipbot-store-bench-"))
    try:
        results = [run_size(args, size, workdir) for size in sizes]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\nCase store (qdrant-edge, embedded), {args.dim}-d cosine, top-{K}, {args.queries} queries; "
        f"latencies in ms; CPU: {cpu_name()}. Baselines in the same run: exact search through the same "
        "store, numpy brute force. recall@10 against exact search.\n"
    )
    print(render_table(*table_rows(results, args.ef), args.markdown))
    print()
    print(render_table(*write_rows(results), args.markdown))


if __name__ == "__main__":
    main()
