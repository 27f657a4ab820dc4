"""Stored Celery results that show a user's cases are erased by user and by deleted message, on the real
result backend (Redis), under a prefix of the test's own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

from plipbot.settings import Settings
from workers.app import create_celery_app
from workers.result_erasure import TaskResultErasure

REDIS_URL = "redis://127.0.0.1:6379/0"
GUILD, OTHER_GUILD = 1001, 2002
ALICE, BOB = 11, 22


def case(author: int, guild: int, message: int) -> dict[str, object]:
    return {
        "id": secrets.token_hex(4),
        "score": 0.9,
        "caption": f"case by {author}",
        "source": "discord",
        "link": f"https://discord.com/channels/{guild}/5/{message}",
        "guild_id": guild,
        "author_id": author,
        "scope": "server",
        "tags": [],
    }


@pytest.fixture
def stored() -> Iterator[tuple[TaskResultErasure, redis.Redis, str]]:
    prefix = f"test-results-{secrets.token_hex(4)}:"
    app = create_celery_app(
        Settings(broker_url=REDIS_URL, workers={"key_prefix": prefix})  # type: ignore[arg-type]
    )
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    results = {
        "alice-here": [case(ALICE, GUILD, 100), case(BOB, GUILD, 101)],
        "alice-there": [case(ALICE, OTHER_GUILD, 200)],
        "bob-only": [case(BOB, GUILD, 102)],
    }
    for task_id, cases in results.items():
        app.backend.store_result(task_id, {"kind": "search", "cases": cases}, "SUCCESS")
    app.backend.store_result("ingest", {"kind": "ingest", "point_id": "x", "outcome": "ingested"}, "SUCCESS")
    yield TaskResultErasure(client, prefix=prefix), client, prefix
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
    app.close()


def remaining(client: redis.Redis, prefix: str) -> set[str]:
    return {key.decode().rsplit("-", 1)[-1] for key in client.scan_iter(match=f"{prefix}celery-task-meta-*")}


def test_results_showing_a_withdrawn_users_cases_are_deleted(
    stored: tuple[TaskResultErasure, redis.Redis, str],
) -> None:
    erasure, client, prefix = stored
    assert remaining(client, prefix) == {"here", "there", "only", "ingest"}
    assert erasure.forget_user(ALICE, GUILD) == 1
    assert remaining(client, prefix) == {"there", "only", "ingest"}
    assert erasure.forget_user(ALICE, None) == 1
    assert erasure.forget_user(ALICE, None) == 0
    assert remaining(client, prefix) == {"only", "ingest"}


def test_results_showing_a_deleted_message_are_deleted(
    stored: tuple[TaskResultErasure, redis.Redis, str],
) -> None:
    erasure, client, prefix = stored
    assert erasure.forget_messages(GUILD, [102, 999]) == 1
    assert erasure.forget_messages(OTHER_GUILD, [101]) == 0  # another server's message ids never match
    assert remaining(client, prefix) == {"here", "there", "ingest"}
