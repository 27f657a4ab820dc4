"""Fixtures for the bot's stores: every store test runs on SQLite and on PostgreSQL (one suite, every
backend), as the consent ledger's do, because locking and upserts differ exactly where races hide.

The PostgreSQL plumbing (admin URL, skip locally / fail under CI, schema reset) is the ledger tests';
this session gets a database of its own, dropped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import exc
from sqlalchemy.engine import make_url

from bot.feedback import FeedbackStore
from bot.guild_config import GuildConfigStore
from tests.ingest.conftest import (
    DEFAULT_POSTGRES_ADMIN_URL,
    POSTGRES_URL_ENV,
    _admin_engine,
    _reset_postgres_schema,
    _running_in_ci,
)

_POSTGRES_ADMIN_URL = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_ADMIN_URL)
"""Read at import: the autouse isolation fixture (tests/conftest.py) clears PLIPBOT_* variables before
the first test asks for a database."""


@pytest.fixture(scope="session")
def _bot_postgres_database() -> Iterator[str]:
    """A fresh database for this test session; skipped if PostgreSQL is down, failed if CI is set."""
    admin_url = _POSTGRES_ADMIN_URL
    engine = _admin_engine(admin_url)
    name = f"plipbot_bot_test_{secrets.token_hex(6)}"
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except (exc.OperationalError, exc.InterfaceError) as err:
        engine.dispose()
        shown = make_url(admin_url).render_as_string(hide_password=True)
        reason = f"PostgreSQL is unreachable at {shown} ({type(err.orig).__name__})"
        if _running_in_ci():
            pytest.fail(f"{reason}; CI is set, so the PostgreSQL service must be running.")
        pytest.skip(f"{reason}; start it or set {POSTGRES_URL_ENV} to run the PostgreSQL store tests.")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def bot_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database URL; SQLite sits in a folder that does not exist yet (the store makes it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('bot') / 'data' / 'bot.sqlite3'}"
        return
    url: str = request.getfixturevalue("_bot_postgres_database")
    yield url
    _reset_postgres_schema(url)


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
