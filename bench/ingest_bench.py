"""Ingest throughput and similar-case search latency on the embedded store at 10k and 200k cases.

    .venv/bin/python bench/ingest_bench.py [--sizes 10000 200000] [--images 64] [--precision fp32]

The corpus is pre-filled with random unit vectors (spread over 20 servers, half shared); then real
images (crops of scikit-image's public IHC sample) go through the whole pipeline (decode, clean, PHI
screen, hash, embed with a PLIP-shaped random ViT-B/32, dedup search, thumbnail, upsert), and
searches run through the privacy filter with near-duplicate collapsing. Baseline: numpy brute-force
top-10 over the same matrix, in the same process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.consent_ledger import ConsentScope
from ingest.pipeline import PostImage
from plipbot.composition import Container
from plipbot.settings import load_settings
from store.records import CasePayload, CaseRecord
from tests.checkpoints import VIT_B_32, make_hf_clip
from tests.imagegen import encode, ihc


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1000, float(np.percentile(samples, 95)) * 1000


def prefill(container: Container, n: int, dim: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    store = container.case_store
    identity = container.weights.identity
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC)
    start = time.perf_counter()
    batch: list[CaseRecord] = []
    for i in range(n):
        guild = 1 + i % 20
        payload = CasePayload(
            guild_id=guild,
            message_id=i,
            author_id=1000 + i % 500,
            caption=f"case {i}",
            created_at=now,
            source="bench",
            scope="shared" if i % 2 else "server",
            phash=f"{i:016x}",
            model=identity.name,
            revision=identity.revision,
        )
        batch.append(CaseRecord(str(uuid.UUID(int=i + 1)), payload, vectors[i], vectors[(i * 7) % n]))
        if len(batch) == 4096:
            store.upsert(batch)
            batch = []
    if batch:
        store.upsert(batch)
    return time.perf_counter() - start, vectors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="plipbot-ingest-bench-"))
    ckpt = tmp / "random-vit-b-32"
    make_hf_clip(ckpt, VIT_B_32, seed=0, content_dominant=True)
    rng = np.random.default_rng(0)
    base = ihc()
    images = []
    for _ in range(args.images):
        x, y = rng.integers(0, 512 - 224, size=2)
        images.append(
            encode(
                base.crop((int(x), int(y), int(x) + 224, int(y) + 224)).rotate(int(rng.integers(0, 4)) * 90)
            )
        )

    rows = []
    for size in args.sizes:
        container = Container(
            load_settings(
                data_dir=tmp / f"data-{size}",
                model={"name": str(ckpt), "precision": args.precision},
                ingest={"gate_threshold": 0.0},
            )
        )
        pipeline = container.ingest_pipeline
        fill_s, matrix = prefill(container, size, container.encoder.embed_dim, rng)
        pipeline.consent_ledger.grant(7, 3, ConsentScope.SERVER)
        posts = [
            PostImage(
                point_id=str(uuid.uuid4()),
                guild_id=3,
                image=data,
                created_at=datetime.now(UTC),
                author_id=7,
                message_id=10_000_000 + i,
                caption="bench case, H&E, x200",
            )
            for i, data in enumerate(images)
        ]
        start = time.perf_counter()
        for i in range(0, len(posts), 32):
            pipeline.ingest(posts[i : i + 32], skip_gate=True)
        ingest_s = time.perf_counter() - start

        search = container.similar_search
        queries = rng.standard_normal((200, matrix.shape[1]), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        lat = []
        for q in queries:
            t = time.perf_counter()
            search.by_vector(q, using="image", guild_id=3, k=10)
            lat.append(time.perf_counter() - t)
        base_lat = []
        for q in queries[:50]:
            t = time.perf_counter()
            scores = matrix @ q
            np.argpartition(-scores, 10)[:10]
            base_lat.append(time.perf_counter() - t)
        text_lat = []
        for i in range(20):
            t = time.perf_counter()
            search.by_text(f"signet ring cell carcinoma {i}", guild_id=3, k=10)
            text_lat.append(time.perf_counter() - t)
        p50, p95 = percentiles(lat)
        b50, _ = percentiles(base_lat)
        t50, t95 = percentiles(text_lat)
        rows.append(
            (
                f"{size:,}",
                f"{size / fill_s:,.0f}/s",
                f"{len(posts) / ingest_s:.1f} img/s",
                f"{p50:.1f} / {p95:.1f} ms",
                f"{b50:.1f} ms",
                f"{p50 / b50:.2f}x",
                f"{t50:.0f} / {t95:.0f} ms",
            )
        )
        container.close()

    header = (
        "cases",
        "prefill upsert",
        "ingest (full pipeline)",
        "image search p50/p95",
        "numpy top-10 p50",
        "search/numpy",
        "text search p50/p95 (incl. encode)",
    )
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
    print(f"precision {args.precision}; search = guild filter + shared, collapse 0.95, k=10")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
