"""Corpus tasks (ingest_post, answer, search, withdraw) through Redis and a real `plipbot worker`.

One worker serves both queues, so a single process owns the embedded case store; the test process
shares the consent ledger with it (the same SQLite file) and reads the store only once every worker
has stopped. The second test kills the worker with -9 in the middle of a burst of ingests and checks
that acks_late redelivery to a fresh worker (plus a resend by any caller that timed out) loses no
post and stores none twice.

The model is a random tiny CLIP (`tiny_checkpoint`), NOT PLIP: it cannot tell pathology from
anything else (so the ingest gate is off), and its image embeddings of neighbouring crops of one
micrograph are far closer than a real model's (up to 0.998 cosine), so reposts are judged by a
0.999 cosine (and the perceptual hash, which still catches byte-identical reposts).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from ingest.consent_ledger import ConsentLedger
from plipbot.composition import Container
from plipbot.settings import IngestSettings, Settings
from store.ids import case_point_id
from store.thumbnails import ThumbnailStore
from tests import imagegen
from tests.workers.harness import WorkerConfig, WorkerProcess, plipbot_worker, wait_for
from workers.case_contracts import (
    AnswerRequest,
    AnswerResult,
    IngestPostRequest,
    IngestPostResult,
    SearchRequest,
    SearchResult,
    WithdrawRequest,
    WithdrawResult,
)
from workers.client import CeleryTransport, TaskClient
from workers.contracts import TaskError

pytestmark = pytest.mark.integration

GUILD, OTHER_GUILD, CHANNEL = 601, 602, 9
ALICE, BOB, MALLORY = 71, 72, 73  # Mallory never consents
RANDOM_MODEL_INGEST = {"gate_threshold": 0.0, "duplicate_cosine": 0.999}
# Unacknowledged messages come back after 3 s (the default, 300 s, must exceed the longest task).
FAST_REDELIVERY = {"visibility_timeout_s": 3, "restore_interval_s": 0.5}
BURST = 12
TASK_TIMEOUT_S = 45.0  # a worker's first task loads the model
BURST_TIMEOUT_S = 25.0  # long enough for a fresh worker to take over, short enough to resend
_TASK_LOG = re.compile(r"Task plipbot\.ingest_post\[([0-9a-f-]+)\] (received|succeeded)")


@dataclass
class CorpusWorkerConfig(WorkerConfig):
    """A WorkerConfig that also carries `ingest` settings, for the test's Settings and the worker's env."""

    ingest: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        base = super().settings()
        return base.model_copy(
            update={"ingest": IngestSettings(**{**base.ingest.model_dump(), **self.ingest})}
        )

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({f"PLIPBOT_INGEST__{key.upper()}": str(value) for key, value in self.ingest.items()})
        return env


@pytest.fixture()
def config(shared_redis: str, key_prefix: str, tiny_checkpoint: Path, tmp_path: Path) -> CorpusWorkerConfig:
    return CorpusWorkerConfig(
        shared_redis,
        f"{key_prefix}corpus-{uuid.uuid4().hex[:6]}:",
        tmp_path / "worker-data",
        model_name=str(tiny_checkpoint),
        ingest=dict(RANDOM_MODEL_INGEST),
    )


@pytest.fixture()
def workers() -> Iterator[list[WorkerProcess]]:
    """Every worker a test starts; any still running at the end is stopped (killed if it hangs)."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture()
def consent_ledger(config: CorpusWorkerConfig) -> Iterator[ConsentLedger]:
    """The worker's ledger (same SQLite file under the data dir), opened by the test process."""
    ledger = ConsentLedger.from_settings(config.settings())
    yield ledger
    ledger.close()


@pytest.fixture()
def client(config: CorpusWorkerConfig) -> Iterator[TaskClient]:
    """The bot's side: sends by name through Redis, uploads into the Redis blob store; no store."""
    container = Container(config.settings())
    client = container.task_client
    assert isinstance(client.transport, CeleryTransport)
    yield client
    client.close()
    container.close()


def start_worker(config: WorkerConfig, log: Path, started: list[WorkerProcess]) -> WorkerProcess:
    """One worker on both queues (one owner for the embedded store), four task threads."""
    worker = plipbot_worker(config, log, "--queues=gpu,ingest", "--pool=threads", "--concurrency=4")
    started.append(worker.start())
    return worker.wait_ready()


def crop(x: int, y: int, size: int) -> bytes:
    return imagegen.encode(imagegen.ihc().crop((x, y, x + size, y + size)))


def post_request(
    client: TaskClient, data: bytes, message: int, author: int, caption: str
) -> IngestPostRequest:
    return IngestPostRequest(
        image=client.upload(data),
        guild_id=GUILD,
        channel_id=CHANNEL,
        message_id=message,
        attachment_id=1,
        author_id=author,
        created_at=datetime.now(UTC),  # after the grant: consent covers posts made from then on
        caption=caption,
        jump_link=jump_link(message),
        filename=f"m{message}.png",
    )


def jump_link(message: int) -> str:
    return f"https://discord.com/channels/{GUILD}/{CHANNEL}/{message}"


def ingest(client: TaskClient, data: bytes, message: int, author: int, caption: str) -> IngestPostResult:
    result = client.ingest_post(
        post_request(client, data, message, author, caption), timeout_s=TASK_TIMEOUT_S
    )
    assert isinstance(result, IngestPostResult), result
    assert result.point_id == case_point_id(GUILD, message, 1)
    return result


def search(client: TaskClient, request: SearchRequest) -> SearchResult:
    result = client.search(request, timeout_s=TASK_TIMEOUT_S)
    assert isinstance(result, SearchResult), result
    return result


def test_ingest_answer_search_withdraw_through_a_worker_process(
    config: CorpusWorkerConfig,
    workers: list[WorkerProcess],
    consent_ledger: ConsentLedger,
    client: TaskClient,
    tmp_path: Path,
) -> None:
    worker = start_worker(config, tmp_path / "worker.log", workers)
    slide_a, slide_b, slide_c = crop(0, 0, 200), crop(300, 0, 200), crop(0, 300, 200)

    # The worker reads the ledger the test process writes: before the grant, nothing is stored.
    assert ingest(client, slide_a, 1, ALICE, "before consent").outcome == "no_consent"
    consent_ledger.grant(ALICE, GUILD, "server")
    consent_ledger.grant(BOB, GUILD, "server")
    first = ingest(client, slide_a, 2, ALICE, "tubular adenoma")
    second = ingest(client, slide_b, 3, ALICE, "lymph node")
    bobs = ingest(client, slide_c, 4, BOB, "squamous cell carcinoma")
    repost = ingest(client, slide_a, 5, ALICE, "same again")
    assert [r.outcome for r in (first, second, bobs, repost)] == ["ingested"] * 3 + ["duplicate"]
    assert repost.duplicate_of == first.point_id
    expected = {
        first.point_id: ("tubular adenoma", jump_link(2), ALICE),
        second.point_id: ("lymph node", jump_link(3), ALICE),
        bobs.point_id: ("squamous cell carcinoma", jump_link(4), BOB),
    }

    answer = client.answer(
        AnswerRequest(image=client.upload(slide_a), preset="kather", guild_id=GUILD, k=3),
        timeout_s=TASK_TIMEOUT_S,
    )
    assert isinstance(answer, AnswerResult), answer
    assert answer.suggest.label_set == "kather" and len(answer.suggest.suggestions) == 3
    assert answer.suggest.model.name == "local" and answer.suggest.model.source == str(config.model_name)
    assert {c.id for c in answer.cases} == set(expected)
    top = answer.cases[0]
    assert top.id == first.point_id and top.score > 0.99
    assert (top.caption, top.link, top.author_id) == expected[first.point_id]
    assert (top.guild_id, top.scope, top.source) == (GUILD, "server", "discord")
    elsewhere = client.answer(AnswerRequest(image=client.upload(slide_a), guild_id=OTHER_GUILD))
    assert isinstance(elsewhere, AnswerResult) and elsewhere.cases == []  # the cases are private to GUILD

    by_text = search(client, SearchRequest(mode="text", text="lymph node", guild_id=GUILD, k=5))
    assert {c.id: (c.caption, c.link, c.author_id) for c in by_text.cases} == expected
    assert by_text.model.name == "local"
    by_image = search(client, SearchRequest(mode="image", image=client.upload(slide_b), guild_id=GUILD))
    assert by_image.cases[0].id == second.point_id and by_image.cases[0].score > 0.99
    assert {c.id for c in by_image.cases} == set(expected)
    by_caption = search(client, SearchRequest(mode="captions", image=client.upload(slide_c), guild_id=GUILD))
    assert {c.id for c in by_caption.cases} == set(expected)  # every case has a caption vector

    withdrawn = client.withdraw(WithdrawRequest(user_id=ALICE, guild_id=GUILD), timeout_s=TASK_TIMEOUT_S)
    assert isinstance(withdrawn, WithdrawResult) and withdrawn.deleted == 2, withdrawn
    assert consent_ledger.current(ALICE, GUILD) is None  # the worker's withdrawal, seen from here
    for request in (
        SearchRequest(mode="image", image=client.upload(slide_a), guild_id=GUILD),
        SearchRequest(mode="text", text="tubular adenoma", guild_id=GUILD),
        SearchRequest(mode="captions", image=client.upload(slide_b), guild_id=GUILD),
    ):
        assert [c.id for c in search(client, request).cases] == [bobs.point_id], request.mode
    assert set(ThumbnailStore(config.settings().thumbnails_dir).ids()) == {bobs.point_id}
    again = client.withdraw(WithdrawRequest(user_id=ALICE), timeout_s=TASK_TIMEOUT_S)  # idempotent
    assert isinstance(again, WithdrawResult) and again.deleted == 0, again
    # Alice posts again without a new grant: the worker refuses it.
    assert ingest(client, crop(300, 300, 200), 6, ALICE, "after withdrawal").outcome == "no_consent"
    assert "Traceback" not in worker.log()


def broker_state(config: WorkerConfig) -> str:
    """The run's broker keys (queues, unacknowledged messages, the restore mutex), for failure messages."""
    store = redis.Redis.from_url(config.broker_url, decode_responses=True)
    lines = []
    for key in sorted(store.scan_iter(match=f"{config.key_prefix}*")):
        kind = store.type(key)
        if kind == "string" and "celery-task-meta" in key:
            continue
        size = {"list": store.llen, "hash": store.hlen, "zset": store.zcard, "set": store.scard}.get(kind)
        lines.append(f"{key} {kind} size={size(key) if size else '-'} pttl={store.pttl(key)}")
    return "\n".join(lines)


def ingest_tasks(log: str) -> dict[str, set[str]]:
    """Ingest task ids by what the worker log says happened to them (received, succeeded)."""
    seen: dict[str, set[str]] = {"received": set(), "succeeded": set()}
    for task_id, event in _TASK_LOG.findall(log):
        seen[event].add(task_id)
    return seen


def test_worker_killed_mid_ingest_loses_no_post_and_stores_none_twice(
    config: CorpusWorkerConfig,
    workers: list[WorkerProcess],
    consent_ledger: ConsentLedger,
    client: TaskClient,
    tmp_path: Path,
) -> None:
    config.workers.update(FAST_REDELIVERY)
    settings = config.settings()
    consent_ledger.grant(ALICE, GUILD, "server")
    # 12 of the 16 non-overlapping 128 px tiles of the micrograph: distinct posts.
    tiles = [crop(x, y, 128) for y in (0, 128, 256, 384) for x in (0, 128, 256, 384)][:BURST]
    messages = [100 + i for i in range(BURST)]
    expected_ids = {case_point_id(GUILD, m, 1) for m in messages}
    requests = [post_request(client, t, m, ALICE, f"tile {m}") for t, m in zip(tiles, messages, strict=True)]

    first = start_worker(config, tmp_path / "worker-1.log", workers)
    # The first task loads the model (seconds on a small CPU) and opens the store; a post of an author
    # without consent does both and must stay out of the corpus.
    warm_up = ingest(client, crop(384, 384, 128), 99, MALLORY, "never consented")
    assert warm_up.outcome == "no_consent"

    with ThreadPoolExecutor(BURST) as pool:
        futures: list[Future[IngestPostResult | TaskError]] = [
            pool.submit(client.ingest_post, request, timeout_s=BURST_TIMEOUT_S) for request in requests
        ]
        wait_for(lambda: sum(f.done() for f in futures) >= 3, 30, "three posts to be ingested")
        first.kill()  # SIGKILL: no warm shutdown, nothing acknowledged or requeued by the worker
        finished_before_kill = sum(f.done() for f in futures)
        assert finished_before_kill < BURST, "the kill must land mid-burst"
        second = start_worker(config, tmp_path / "worker-2.log", workers)
        results = [f.result(timeout=BURST_TIMEOUT_S + 15) for f in futures]

    # Redis can lose a message the dying worker had popped but not yet recorded as unacknowledged,
    # and a worker killed inside its restore pass stalls redelivery (the restore lock outlives it):
    # such a caller gets a timeout and must send the (idempotent) task again.
    resent = 0
    for i, result in enumerate(results):
        if isinstance(result, TaskError) and result.code == "timeout":
            resent += 1
            results[i] = client.ingest_post(requests[i], timeout_s=BURST_TIMEOUT_S)
    assert all(isinstance(r, IngestPostResult) and r.outcome == "ingested" for r in results), results
    assert {r.point_id for r in results if isinstance(r, IngestPostResult)} == expected_ids

    # What the first worker had taken and not finished ran again on the second (or was resent).
    by_first, by_second = ingest_tasks(first.log()), ingest_tasks(second.log())
    unfinished = by_first["received"] - by_first["succeeded"]
    assert unfinished, "the first worker had ingests in flight when it was killed"
    redelivered = unfinished & by_second["succeeded"]
    assert len(unfinished - redelivered) <= resent, (
        f"in flight at the kill and never run again: {unfinished - redelivered}\n{broker_state(config)}"
    )

    second.stop()
    assert second.process is not None and second.process.returncode == 0, second.log()[-2000:]
    checker = Container(settings)  # every worker is gone: the store may be opened here
    try:
        case_store = checker.case_store
        assert case_store.count() == BURST  # nothing twice, and Mallory's post is not there
        records = case_store.get(sorted(expected_ids))
        assert {r.id for r in records} == expected_ids  # nothing lost
        by_message = {r.payload.message_id: r for r in records}
        assert sorted(by_message) == messages
        for message, record in by_message.items():
            assert record.id == case_point_id(GUILD, message, 1)
            assert (record.payload.caption, record.payload.jump_link) == (
                f"tile {message}",
                jump_link(message),
            )
            assert record.payload.author_id == ALICE and record.payload.scope == "server"
            assert checker.thumbnails.exists(record.id), f"no thumbnail for message {message}"
        assert set(checker.thumbnails.ids()) == expected_ids  # and no thumbnail without its case
    finally:
        checker.close()
    print(f"{finished_before_kill}/{BURST} done at the kill; {len(redelivered)} redelivered, {resent} resent")
