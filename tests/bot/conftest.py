"""Fixtures for the bot's stores: every store test runs on SQLite and on PostgreSQL (one suite, every
backend), as the consent ledger's do, because locking and upserts differ exactly where races hide.

The PostgreSQL plumbing (admin URL, skip locally / fail under CI, schema reset) is tests/postgres.py;
this session gets a database of its own, dropped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.feedback import FeedbackStore
from bot.guild_config import GuildConfigStore
from tests.postgres import BACKENDS, sqlite_or_postgres_url, temporary_database


@pytest.fixture(scope="session")
def _bot_postgres_database() -> Iterator[str]:
    """A fresh database for this test session; skipped if PostgreSQL is down, failed if CI is set."""
    with temporary_database("plipbot_bot_test", "store") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def bot_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database URL; SQLite sits in a folder that does not exist yet (the store makes it)."""
    yield from sqlite_or_postgres_url(
        request,
        tmp_path_factory,
        folder="bot",
        filename="bot.sqlite3",
        database_fixture="_bot_postgres_database",
    )


@pytest.fixture
def config_store(bot_db_url: str) -> Iterator[GuildConfigStore]:
    """A configuration store on `bot_db_url`, closed after the test."""
    with GuildConfigStore(bot_db_url) as store:
        yield store


@pytest.fixture
def feedback_store(bot_db_url: str) -> Iterator[FeedbackStore]:
    """A feedback store on `bot_db_url`, closed after the test."""
    with FeedbackStore(bot_db_url) as store:
        yield store
