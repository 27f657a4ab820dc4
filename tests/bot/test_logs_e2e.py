"""No log keeps what people typed or posted: the real bot against the fake Discord, a real
`plipbot worker` process behind Redis, both writing JSON logs at the production level (info).

A text question carrying an identifier, an image question with a caption, and a consenting post
with a marker caption go through the bot, the queue and the worker (search, answer, ingest_post).
Then every captured log, the bot's (its log stream and this process's stdout/stderr) and the
worker's (its stdout/stderr), is searched for the identifier, the captions, the attachment file
names and their links: none may appear. The logs must also be there and say which tasks ran, so the
test cannot pass on silence. The model is a tiny random checkpoint, NOT PLIP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.app import build_bot
from plipbot.composition import Container
from plipbot.observability import configure_logging
from plipbot.settings import ObservabilitySettings
from tests.bot.settings_for_fake import settings_for_fake
from tests.bot.test_bot_e2e import content_of, invoke_sub, tissue
from tests.fakediscord.server import FakeDiscord
from tests.workers.harness import SHARED_REDIS, WorkerConfig, WorkerProcess, plipbot_worker, redis_alive

pytest_plugins = ["tests.fakediscord.conftest_plugin"]
pytestmark = pytest.mark.integration

QUESTION = "cases like patient Jane Roe MRN 12345678"
IDENTIFIERS = ("Jane", "Roe", "12345678")


@dataclass
class JsonLoggingWorkerConfig(WorkerConfig):
    """A worker with the production log settings and the ingest settings a random model needs."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}


@pytest.fixture
def worker_config(tiny_checkpoint: Path, tmp_path: Path) -> WorkerConfig:
    if not redis_alive(SHARED_REDIS):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return JsonLoggingWorkerConfig(
        SHARED_REDIS,
        f"plipbot-test-logs-{uuid.uuid4().hex[:10]}:",
        tmp_path / "data",
        model_name=str(tiny_checkpoint),
        workers={"allow_private_urls": True},  # the fake CDN is on 127.0.0.1
        extra_env={
            "PLIPBOT_OBSERVABILITY__LOG_FORMAT": "json",
            "PLIPBOT_OBSERVABILITY__LOG_LEVEL": "info",
            "PLIPBOT_INGEST__GATE_THRESHOLD": "0",  # a random model cannot judge pathology
        },
    )


@pytest.fixture
def worker(worker_config: WorkerConfig, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = plipbot_worker(
        worker_config, tmp_path / "worker.log", "--queues=gpu,ingest", "--pool=threads", "--concurrency=2"
    )
    process.start()
    try:
        yield process.wait_ready()
    finally:
        process.stop()
        import redis

        client = redis.Redis.from_url(SHARED_REDIS)
        keys = list(client.scan_iter(match=f"{worker_config.key_prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture
def container(fake_discord: FakeDiscord, worker_config: WorkerConfig) -> Iterator[Container]:
    base = worker_config.settings()
    settings = settings_for_fake(
        fake_discord,
        broker_url=base.broker_url,
        data_dir=base.data_dir,
        model=base.model,
        workers=base.workers,
        observability=ObservabilitySettings(log_format="json", log_level="info"),
    )
    c = Container(settings)
    yield c
    c.close()


@pytest.fixture
def bot_log(container: Container, tmp_path: Path) -> Iterator[Path]:
    """The bot's logging as `plipbot run` sets it up (JSON, info, the token masked), into a file."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    path = tmp_path / "bot.log"
    with path.open("w", encoding="utf-8") as stream:
        token = container.settings.discord.token or ""
        configure_logging(container.settings.observability, component="bot", stream=stream, secrets=[token])
        try:
            yield path
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


def test_a_question_and_a_caption_leave_no_trace_in_any_log(
    fake_discord: FakeDiscord,
    worker: WorkerProcess,
    container: Container,
    bot_log: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    marker = f"CAPTIONMARK{uuid.uuid4().hex[:12]}"
    asked = f"ASKMARK{uuid.uuid4().hex[:12]}"
    post_file = f"slide-{uuid.uuid4().hex[:10]}.png"
    question_file = f"query-{uuid.uuid4().hex[:10]}.png"
    owner = fake_discord.world.owner

    async def scenario() -> list[str]:
        async with fake_discord.connected(build_bot(container)):
            enable = invoke_sub(fake_discord, "ingest", "enable", {}, user=owner)
            await fake_discord.wait_for_interaction_response(enable["id"])
            grant = invoke_sub(fake_discord, "consent", "grant", {})
            assert "Thank you" in content_of(await fake_discord.wait_for_interaction_response(grant["id"]))

            case = fake_discord.add_attachment(tissue(0, 0), post_file, "image/png")
            posted = fake_discord.post_user_message(f"{marker} tubular adenoma", attachments=[case])
            ingested = re.compile(rf"ingest message {posted['id']} attachment \d+: (\w+)")
            await fake_discord.wait_until(
                lambda: ingested.search(bot_log.read_text()), timeout=90, what="the ingest outcome"
            )

            mark = fake_discord.mark()
            fake_discord.post_user_message(QUESTION, mention_bot=True, author=owner)
            search = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=60)

            query = fake_discord.add_attachment(tissue(0, 0), question_file, "image/png")
            mark = fake_discord.mark()
            fake_discord.post_user_message(f"{asked} what is this?", mention_bot=True, attachments=[query])
            answer = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=60)
            return [case["url"], query["url"], search.json["content"], answer.json["content"]]

    case_url, query_url, search_reply, answer_reply = asyncio.run(scenario())
    assert "%" in answer_reply  # the answer went through the worker: suggestions with probabilities
    assert search_reply  # and the text search was answered
    worker.stop()  # flush: everything the worker wrote is in its log file now

    bot_text = bot_log.read_text(encoding="utf-8")
    worker_text = worker.log()
    captured = capfd.readouterr()
    logs = {"bot log": bot_text, "worker log": worker_text, "stdout": captured.out, "stderr": captured.err}

    # The logs are there, in JSON, and name what ran: silence would pass the checks below.
    bot_lines = [json.loads(line) for line in bot_text.splitlines() if line.startswith("{")]
    worker_lines = [json.loads(line) for line in worker_text.splitlines() if line.startswith("{")]
    assert len(bot_lines) >= 3 and len(worker_lines) >= 6
    assert {"bot"} == {line.get("component") for line in bot_lines}
    worker_messages = "\n".join(line["message"] for line in worker_lines)
    for task in ("plipbot.ingest_post", "plipbot.search", "plipbot.answer"):
        assert re.search(rf"Task {task}\[[0-9a-f-]+\] received", worker_messages), task
        succeeded = rf"Task {task}\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: <redacted>"
        assert re.search(succeeded, worker_messages), task
    assert any(line["logger"] == "bot.cogs.consent" for line in bot_lines)

    secrets = [
        *IDENTIFIERS,
        marker,
        asked,
        post_file,
        question_file,
        case_url,
        query_url,
        post_file.removesuffix(".png"),
        question_file.removesuffix(".png"),
        fake_discord.token,
    ]
    for where, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} is in the {where}"
