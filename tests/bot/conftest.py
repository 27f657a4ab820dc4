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
from tests.postgres import reset_schema, temporary_database


@pytest.fixture(scope="session")
def _bot_postgres_database() -> Iterator[str]:
    """A fresh database for this test session; skipped if PostgreSQL is down, failed if CI is set."""
    with temporary_database("plipbot_bot_test", "store") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def bot_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database URL; SQLite sits in a folder that does not exist yet (the store makes it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('bot') / 'data' / 'bot.sqlite3'}"
        return
    url: str = request.getfixturevalue("_bot_postgres_database")
    yield url
    reset_schema(url)


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
