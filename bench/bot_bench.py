"""Benchmark mention-to-reply latency through a fake Discord, on CPU, in embedded mode, and where it goes.

Answers "what does a pathologist wait for after @-mentioning the bot with an image, and how much of
that is Discord plumbing and rendering rather than the model?". The real bot (discord.py client, cogs,
services, embedded worker) runs in-process against `tests.fakediscord` on 127.0.0.1. One mention with
an image is sent at a time; latency runs from dispatching MESSAGE_CREATE to the fake receiving the
reply upload (CDN download, task, charts, multipart upload included). Two in-process baselines use the
same images, label set and k:

- `task`: `container.task_client.answer(...)` alone (download from the fake CDN, embed, score, search);
- `task+render`: `services.answer_image(...)`, i.e. the task plus the reply text, chart and case grid.

Each mention is also split into its parts (timers wrapped around the real functions, in this process):
the model (image forward pass, label scoring), download from the CDN, decode, similar-case search (the vector
search, and the lookup of the servers sharing now that the privacy filter needs),
render (reply text, chart, case grid), the channel's configuration (a database read) and Discord
(everything else between the gateway event and the reply upload; the fake Discord runs in this
process, so its own work lands there too). "rest" is mention->reply minus the model, per mention.

Models are random checkpoints (NOT PLIP; numbers say nothing about accuracy): one with PLIP's exact
shape (ViT-B/32, 512-d), so the compute is PLIP's, with a pre-filled corpus (default 10,000 cases of
this server, so each reply carries the similar-cases list and grid); `--tiny` adds a tiny model, where
the model is nearly free and the overhead shows. Not run by the tests. Usage:

    .venv/bin/python bench/bot_bench.py [--n 30] [--warmup 3] [--corpus 10000] [--tiny] [--markdown]
    .venv/bin/python bench/bot_bench.py --full    # n=100, with the tiny row
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.machine import cpu_name, render_table  # noqa: E402
from bot.app import PlipBot, build_bot  # noqa: E402
from bot.services import Attachment, _shared_templates  # noqa: E402
from plipbot.composition import Container  # noqa: E402
from plipbot.settings import Settings  # noqa: E402
from store.ids import import_point_id  # noqa: E402
from store.records import CasePayload, CaseRecord  # noqa: E402
from store.thumbnails import encode_thumbnail  # noqa: E402
from tests import imagegen  # noqa: E402
from tests.bot.settings_for_fake import embedded_settings_for_fake  # noqa: E402
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
    parts: list[dict[str, float]] = field(default_factory=list)  # per mention, see Probe
    files_seen: set[str] = field(default_factory=set)


class Probe:
    """Wall time of named functions during one mention, summed per name (calls run one at a time).

    Wraps the real functions (class attributes, so the worker's batcher and the bot's services pick
    them up); records only between `start()` and `stop()`, so the baseline calls do not count.
    """

    def __init__(self) -> None:
        self._current: dict[str, float] | None = None

    def wrap(self, owner: object, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        probe = self

        def add(started: float) -> None:
            if probe._current is not None:
                probe._current[name] += (time.perf_counter() - started) * 1000

        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def timed_async(*args: object, **kwargs: object) -> object:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    add(started)

            setattr(owner, attribute, timed_async)
            return

        @functools.wraps(original)
        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                add(started)

        setattr(owner, attribute, timed)

    def start(self) -> None:
        self._current = defaultdict(float)

    def stop(self) -> dict[str, float]:
        parts, self._current = dict(self._current or {}), None
        return parts


def install_probe() -> Probe:
    import model.images
    import store.base
    import store.similar
    import workers.client
    import workers.runtime
    from bot.cogs.answers import AnswersCog
    from bot.services import BotServices

    probe = Probe()
    probe.wrap(workers.runtime.WorkerResources, "_encode_image_batch", "model")
    probe.wrap(workers.runtime.WorkerResources, "predict", "labels")
    probe.wrap(workers.runtime.WorkerResources, "image_bytes", "download")
    probe.wrap(model.images, "decode_image", "decode")
    probe.wrap(store.similar.SimilarCaseSearch, "by_vector", "search")
    probe.wrap(store.base.CaseStore, "search", "vector search")
    probe.wrap(workers.client.TaskClient, "answer", "task")
    probe.wrap(BotServices, "answer_image", "answer")
    probe.wrap(AnswersCog, "_config", "channel config")
    return probe


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
    model = {"name": str(checkpoint), "device": "cpu"}
    return embedded_settings_for_fake(fake, checkpoint, data_dir, model=model)


def prefill_corpus(container: Container, guild_id: int, n: int, images: list[bytes]) -> None:
    """`n` server cases around the embeddings of `images` (so some are near any query), thumbnails too."""
    decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    centres = container.encoder.encode_images(decoded)
    rng = np.random.default_rng(0)
    # Neighbours at cosine ~0.9 to their centre and ~0.83 to each other whatever the dimension: similar
    # cases, not reposts (ingest refuses a server's reposts; 1,250 copies of one image would make every
    # search collapse its way through a thousand candidates).
    dim = centres.shape[1]
    noise = rng.standard_normal((n, dim)).astype(np.float32) * np.float32(0.45 / np.sqrt(dim))
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
    with store.bulk_writes():  # one index build at the end, as `plipbot import` does
        store.upsert(records)
    # The files `ThumbnailStore.put` would write, without its fsync per file (10k of them).
    thumbnails = [encode_thumbnail(image) for image in decoded]
    for row, record in enumerate(records):
        path = container.thumbnails.path(record.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(thumbnails[row % len(thumbnails)])


async def mention(fake: FakeDiscord, row: Row, data: bytes, i: int, probe: Probe) -> tuple[float, dict]:
    """One mention with a new attachment of `data`; ms from dispatch to the fake receiving the reply,
    and the probe's parts of it."""
    attachment = fake.add_attachment(data, f"slide-{i}.png", "image/png")
    mark = fake.mark()
    probe.start()
    started = time.perf_counter()
    fake.post_user_message("what is this?", mention_bot=True, attachments=[attachment])
    sent = await fake.wait_for_message(fake.channel_id, after=mark, timeout=120)
    elapsed_ms = (time.perf_counter() - started) * 1000
    parts = probe.stop()
    names = [f.filename for f in sent.files]
    if "suggestions.png" not in names:
        raise SystemExit(f"unexpected reply: {sent.json.get('content')!r} files={names}")
    row.files_seen.update(names)
    return elapsed_ms, parts


def timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


async def measure(
    fake: FakeDiscord,
    bot: PlipBot,
    container: Container,
    row: Row,
    images: list[bytes],
    n: int,
    warmup: int,
    probe: Probe,
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
        mention_ms, parts = await mention(fake, row, images[index], i, probe)
        task_ms = await asyncio.to_thread(timed_ms, lambda index=index: task(index))
        render_ms = await asyncio.to_thread(timed_ms, lambda index=index: render(index))
        if i >= warmup:
            row.mention_ms.append(mention_ms)
            row.parts.append({"total": mention_ms, **parts})
            row.task_ms.append(task_ms)
            row.render_ms.append(render_ms)


def run_row(row: Row, images: list[bytes], n: int, warmup: int, workdir: Path, probe: Probe) -> None:
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
                    await measure(fake, bot, container, row, images, n, warmup, probe)

            asyncio.run(scenario())
        finally:
            container.close()
        if fake.errors:
            raise SystemExit("the fake Discord raised:\n" + "\n".join(fake.errors))


def breakdown(row: Row) -> dict[str, list[float]]:
    """Per-mention parts: the model, and what is not the model (see the module docstring)."""
    columns: dict[str, list[float]] = defaultdict(list)
    for parts in row.parts:
        def get(name: str, parts: dict[str, float] = parts) -> float:
            return parts.get(name, 0.0)

        model_ms = get("model") + get("labels")
        columns["model"].append(model_ms)
        columns["rest"].append(parts["total"] - model_ms)
        columns["download"].append(get("download"))
        columns["decode"].append(get("decode"))
        columns["vector search"].append(get("vector search"))
        columns["sharing lookup"].append(get("search") - get("vector search"))  # servers sharing now
        columns["task, other"].append(
            get("task") - model_ms - get("download") - get("decode") - get("search")
        )
        columns["render"].append(get("answer") - get("task"))
        columns["channel config"].append(get("channel config"))
        # The gateway event, the typing request, the reply upload, the fake's own parsing of them
        # (it runs in this process: its CPU and GIL time land here too).
        columns["discord"].append(parts["total"] - get("answer") - get("channel config"))
    return columns


def print_tables(rows: list[Row], n: int, markdown: bool) -> None:
    def p50(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}"

    def p95(values: list[float]) -> str:
        return f"{percentiles(values)[1]:.1f}"

    header = ["model", "corpus", "mention->reply p50", "p95", "task+render p50", "task p50", "reply/task"]
    body = [
        [
            row.name,
            f"{row.corpus:,}",
            p50(row.mention_ms),
            p95(row.mention_ms),
            p50(row.render_ms),
            p50(row.task_ms),
            f"{statistics.median(row.mention_ms) / statistics.median(row.task_ms):.2f}",
        ]
        for row in rows
    ]
    print(render_table(header, body, markdown))
    print()
    parts = [
        "model", "rest", "download", "decode", "vector search", "sharing lookup", "task, other", "render",
        "channel config", "discord",
    ]  # fmt: skip
    header = ["model", "corpus", *(f"{part} p50" for part in parts)]
    body = []
    for row in rows:
        columns = breakdown(row)
        body.append([row.name, f"{row.corpus:,}", *(p50(columns[part]) for part in parts)])
    print(render_table(header, body, markdown))
    print(
        f"\n{n} sequential mentions per row after warm-up, ms; baselines in the same run, interleaved: "
        "task = the answer task alone, task+render = the bot's answer service without Discord. "
        "rest = mention->reply minus the model, per mention.\nReply files: "
        + "; ".join(f"{row.name}: {sorted(row.files_seen)}" for row in rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=30, help="measured mentions (and baseline calls) per row")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured requests first")
    parser.add_argument("--corpus", type=int, default=10_000, help="cases pre-filled (this server's)")
    parser.add_argument("--tiny", action="store_true", help="add a row with a tiny model")
    parser.add_argument("--full", action="store_true", help="n=100 and the tiny row")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()
    if args.full:
        args.n, args.tiny = max(args.n, 100), True
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(logging.ERROR)  # "PyNaCl is not installed" per client
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    probe = install_probe()
    with tempfile.TemporaryDirectory(prefix="plipbot-bot-bench-") as tmp:
        workdir = Path(tmp)
        print("building random checkpoints (NOT PLIP: random weights, compute only) ...")
        plip_shaped = workdir / "ckpt" / "random-vit-b-32"
        make_hf_clip(plip_shaped, VIT_B_32, seed=1, content_dominant=True)
        rows = [Row("ViT-B/32 (PLIP shape)", plip_shaped, corpus=args.corpus)]
        if args.tiny:
            tiny = workdir / "ckpt" / "tiny-random-clip"
            make_hf_clip(tiny, TINY, seed=0, content_dominant=True)
            rows.append(Row("tiny", tiny, corpus=args.corpus))
        images = tiles()
        for row in rows:
            print(f"running {row.name} with {row.corpus} cases ...", flush=True)
            run_row(row, images, args.n, args.warmup, workdir, probe)
        print(
            f"\nMention -> reply through the fake Discord, embedded mode; CPU: {cpu_name()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"load average {os.getloadavg()[0]:.1f}; images: {TILES} distinct {TILE_SIDE}x{TILE_SIDE} PNG "
            "tiles, default label set.\n"
        )
        print_tables(rows, args.n, args.markdown)


if __name__ == "__main__":
    main()
