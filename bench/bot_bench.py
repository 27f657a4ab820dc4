"""Benchmark mention-to-reply latency through a fake Discord, on CPU, in embedded mode.

Answers "what does a pathologist wait for after @-mentioning the bot with an image, and how much of
that is Discord plumbing and rendering rather than the model?". The real bot (discord.py client, cogs,
services, embedded worker) runs in-process against `tests.fakediscord` on 127.0.0.1. One mention with
an image is sent at a time; latency runs from dispatching MESSAGE_CREATE to the fake receiving the
reply upload (CDN download, task, charts, multipart upload included). Two in-process baselines use the
same images, label set and k:

- `task`: `container.task_client.answer(...)` alone (download from the fake CDN, embed, score, search);
- `task+render`: `services.answer_image(...)`, i.e. the task plus the reply text, chart and case grid.

Models are random checkpoints (NOT PLIP; numbers say nothing about accuracy): one with PLIP's exact
shape (ViT-B/32, 512-d), so the compute is PLIP's, and a tiny one, where the model is nearly free and
the overhead shows. The last row adds a pre-filled corpus (default 1000 cases of this server), so each
reply also carries the similar-cases list and grid. Not run by the tests. Usage:

    .venv/bin/python bench/bot_bench.py [--n 50] [--warmup 3] [--corpus 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bot.app import PlipBot, build_bot  # noqa: E402
from bot.services import Attachment, _shared_templates  # noqa: E402
from plipbot.composition import Container  # noqa: E402
from plipbot.settings import Settings  # noqa: E402
from store.ids import import_point_id  # noqa: E402
from store.records import CasePayload, CaseRecord  # noqa: E402
from tests import imagegen  # noqa: E402
from tests.checkpoints import TINY, VIT_B_32, make_hf_clip  # noqa: E402
from tests.fakediscord.models import default_world  # noqa: E402
from tests.fakediscord.server import FakeDiscord  # noqa: E402
from workers.case_contracts import AnswerRequest, AnswerResult  # noqa: E402
from workers.contracts import ImageRef  # noqa: E402

TILE_SIDE = 224
TILES = 8  # distinct images, cycled: each mention is a new attachment, as in a real channel
CREATED_AT = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Row:
    """One benchmark configuration and its samples (milliseconds)."""

    name: str
    checkpoint: Path
    corpus: int = 0
    mention_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    task_ms: list[float] = field(default_factory=list)
    files_seen: set[str] = field(default_factory=set)


def percentiles(samples_ms: list[float]) -> tuple[float, float, float]:
    """(p50, p95, mean); p95 is the nearest-rank sample."""
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, statistics.mean(ordered)


def tiles() -> list[bytes]:
    """Distinct PNG crops of the synthetic IHC image (what a pathologist might post, roughly)."""
    source = imagegen.ihc()
    step_x = max(1, (source.width - TILE_SIDE) // TILES)
    crops = []
    for i in range(TILES):
        x, y = i * step_x, (i * 37) % max(1, source.height - TILE_SIDE)
        crops.append(imagegen.encode(source.crop((x, y, x + TILE_SIDE, y + TILE_SIDE))))
    return crops


def settings_for(fake: FakeDiscord, checkpoint: Path, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        model={"name": str(checkpoint), "device": "cpu"},  # type: ignore[arg-type]
        ingest={"gate_threshold": 0.0},  # type: ignore[arg-type]
        workers={"allow_private_urls": True},  # type: ignore[arg-type]  (the fake CDN is on 127.0.0.1)
        discord={  # type: ignore[arg-type]
            "token": fake.token,
            "api_base": fake.api_base,
            "gateway_url": fake.gateway_url,
            "guild_ready_timeout_s": 0.05,
            "cooldown_user_s": 0,
            "cooldown_channel_s": 0,
            "sync_guild_id": int(fake.guild_id),
            "message_content_intent": True,
        },
    )


def prefill_corpus(container: Container, guild_id: int, n: int, images: list[bytes]) -> None:
    """`n` server cases around the embeddings of `images` (so some are near any query), thumbnails too."""
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    centres = container.encoder.encode_images(decoded)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((n, centres.shape[1])).astype(np.float32) * 0.02
    vectors = centres[np.arange(n) % len(centres)] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    identity = container.encoder.identity
    store = container.case_store
    store.ensure_collection(int(centres.shape[1]))
    records = [
        CaseRecord(
            id=import_point_id("bench", f"case-{row}.png"),
            payload=CasePayload(
                guild_id=guild_id,
                message_id=10_000 + row,
                author_id=row % 97,
                caption=f"bench case {row}: tubular adenoma, low-grade dysplasia",
                created_at=CREATED_AT,
                source="import",
                scope="server",
                phash=f"{row:016x}",
                model=identity.name,
                revision=identity.revision,
            ),
            image_vector=vectors[row],
        )
        for row in range(n)
    ]
    store.upsert(records)
    for row, record in enumerate(records):
        container.thumbnails.put(record.id, decoded[row % len(decoded)])


async def mention(fake: FakeDiscord, row: Row, data: bytes, i: int) -> float:
    """One mention with a new attachment of `data`; ms from dispatch to the fake receiving the reply."""
    attachment = fake.add_attachment(data, f"slide-{i}.png", "image/png")
    mark = fake.mark()
    started = time.perf_counter()
    fake.post_user_message("what is this?", mention_bot=True, attachments=[attachment])
    sent = await fake.wait_for_message(fake.channel_id, after=mark, timeout=120)
    elapsed_ms = (time.perf_counter() - started) * 1000
    names = [f.filename for f in sent.files]
    if "suggestions.png" not in names:
        raise SystemExit(f"unexpected reply: {sent.json.get('content')!r} files={names}")
    row.files_seen.update(names)
    return elapsed_ms


def timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


async def measure(
    fake: FakeDiscord, bot: PlipBot, container: Container, row: Row, images: list[bytes], n: int, warmup: int
) -> None:
    """Mention, then both baselines, for the same image in turn (interleaved, so that load from other
    processes hits every column alike). Baselines use fixed CDN links and the mention's label set and k.
    """
    services = bot.services
    config = await asyncio.to_thread(
        services.guild_config.channel_config, int(fake.guild_id), int(fake.channel_id)
    )
    label_set = services.label_set_for(config, None)
    attachments = []
    for i, data in enumerate(images):
        payload = fake.add_attachment(data, f"baseline-{i}.png", "image/png")
        attachments.append(
            Attachment(int(payload["id"]), payload["url"], payload["filename"], len(data), "image/png")
        )
    requests = [
        AnswerRequest(
            image=ImageRef.from_url(a.url),
            labels=label_set.texts,
            templates=list(_shared_templates(label_set)),
            guild_id=config.guild_id,
            k=services.settings.discord.similar_cases,
        )
        for a in attachments
    ]

    def task(index: int) -> None:
        outcome = container.task_client.answer(requests[index])
        if not isinstance(outcome, AnswerResult):
            raise SystemExit(f"task failed: {outcome}")
        if row.corpus and not outcome.cases:
            raise SystemExit("the corpus row found no similar cases")

    def render(index: int) -> None:
        reply = services.answer_image(attachments[index], config=config, message_id=None)
        if not reply.ok:
            raise SystemExit(f"answer_image failed: {reply.content}")

    for i in range(warmup + n):
        index = i % len(images)
        # Blocking calls run off the bot's loop, so that it keeps heartbeating meanwhile.
        samples = (
            await mention(fake, row, images[index], i),
            await asyncio.to_thread(timed_ms, lambda index=index: task(index)),
            await asyncio.to_thread(timed_ms, lambda index=index: render(index)),
        )
        if i >= warmup:
            row.mention_ms.append(samples[0])
            row.task_ms.append(samples[1])
            row.render_ms.append(samples[2])


def run_row(row: Row, images: list[bytes], n: int, warmup: int, workdir: Path) -> None:
    with FakeDiscord(default_world()) as fake:
        container = Container(settings_for(fake, row.checkpoint, workdir / row.name.replace(" ", "-")))
        try:
            if row.corpus:
                started = time.perf_counter()
                prefill_corpus(container, int(fake.guild_id), row.corpus, images)
                print(f"  [{row.name}] corpus of {row.corpus} cases in {time.perf_counter() - started:.1f} s")
            bot = build_bot(container)

            async def scenario() -> None:
                async with fake.connected(bot):
                    await measure(fake, bot, container, row, images, n, warmup)

            asyncio.run(scenario())
        finally:
            container.close()
        if fake.errors:
            raise SystemExit("the fake Discord raised:\n" + "\n".join(fake.errors))


def print_table(rows: list[Row], n: int) -> None:
    header = (
        f"{'model':<24} {'corpus':>6} | {'mention->reply ms':^23} | {'task+render ms':^23} | "
        f"{'task ms':^23} | {'ratio':>5}"
    )
    sub = f"{'':<24} {'':>6} | " + " | ".join([f"{'p50':>7} {'p95':>7} {'mean':>7}"] * 3) + f" | {'p50':>5}"
    print(header)
    print(sub)
    print("-" * len(sub))
    for row in rows:
        cells = []
        for samples in (row.mention_ms, row.render_ms, row.task_ms):
            p50, p95, mean = percentiles(samples)
            cells.append(f"{p50:7.1f} {p95:7.1f} {mean:7.1f}")
        ratio = statistics.median(row.mention_ms) / statistics.median(row.task_ms)
        print(f"{row.name:<24} {row.corpus:>6} | " + " | ".join(cells) + f" | {ratio:5.2f}")
    print(
        f"\n{n} sequential requests per column after warm-up; ratio = mention->reply p50 / task p50.\n"
        "Reply files: "
        + "; ".join(f"{row.name}{' +corpus' if row.corpus else ''}: {sorted(row.files_seen)}" for row in rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="measured mentions (and baseline calls) per row")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured requests first")
    parser.add_argument("--corpus", type=int, default=1000, help="cases pre-filled for the corpus row")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(logging.ERROR)  # "PyNaCl is not installed" per client
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    with tempfile.TemporaryDirectory(prefix="plipbot-bot-bench-") as tmp:
        workdir = Path(tmp)
        print("building random checkpoints (both NOT PLIP: random weights, compute only) ...")
        plip_shaped = workdir / "ckpt" / "random-vit-b-32"
        tiny = workdir / "ckpt" / "tiny-random-clip"
        make_hf_clip(plip_shaped, VIT_B_32, seed=1, content_dominant=True)
        make_hf_clip(tiny, TINY, seed=0, content_dominant=True)
        rows = [
            Row("tiny", tiny),
            Row("ViT-B/32 (PLIP shape)", plip_shaped),
            Row("ViT-B/32 (PLIP shape)", plip_shaped, corpus=args.corpus),
        ]
        images = tiles()
        print(
            f"cpu: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads; images: {TILES} distinct {TILE_SIDE}x{TILE_SIDE} PNG tiles, default label set\n"
        )
        for row in rows:
            print(f"running {row.name}{f' with {row.corpus} cases' if row.corpus else ''} ...")
            run_row(row, images, args.n, args.warmup, workdir)
        print()
        print_table(rows, args.n)


if __name__ == "__main__":
    main()
