"""Fixtures for the ingest tests.

Consent ledger: every ledger test runs once on SQLite and once on PostgreSQL (one suite, every backend),
because the two differ exactly where consent bugs hide: time zones, locking and partial unique indexes.
PostgreSQL gets a fresh database per test session, dropped at the end; each test starts from an empty
schema. Point `PLIPBOT_TEST_POSTGRES_URL` at another server's admin database to use it. Without a reachable
PostgreSQL those tests are skipped, except under CI, where they fail: CI must start the service.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from ingest.consent_ledger import ConsentLedger

POSTGRES_URL_ENV = "PLIPBOT_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _admin_engine(url: str) -> Engine:
    """AUTOCOMMIT, because CREATE/DROP DATABASE cannot run inside a transaction."""
    psycopg = make_url(url).get_driver_name() in {"psycopg", "psycopg2"}
    connect_args = {"connect_timeout": 3} if psycopg else {}
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args=connect_args)


@pytest.fixture(scope="session")
def _ledger_postgres_admin_url() -> str:
    """The admin URL, after checking the server answers (skip here, fail under CI)."""
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_ADMIN_URL)
    shown = make_url(url).render_as_string(hide_password=True)
    engine = _admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except (exc.OperationalError, exc.InterfaceError) as err:
        reason = f"PostgreSQL is unreachable at {shown} ({type(err.orig).__name__})"
        if _running_in_ci():
            pytest.fail(f"{reason}; CI is set, so the PostgreSQL service must be running.")
        pytest.skip(f"{reason}; start it or set {POSTGRES_URL_ENV} to run the PostgreSQL ledger tests.")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def _ledger_postgres_database(_ledger_postgres_admin_url: str) -> Iterator[str]:
    """A database of our own for this test session, so parallel sessions and leftovers never collide."""
    name = f"plipbot_test_{secrets.token_hex(6)}"
    engine = _admin_engine(_ledger_postgres_admin_url)
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(_ledger_postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


def _reset_postgres_schema(url: str) -> None:
    """Empty the session database between tests (much cheaper than a new database per test)."""
    engine = _admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def ledger_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty ledger database URL; SQLite sits in a folder that does not exist yet (the ledger makes it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'data' / 'consent.sqlite3'}"
        return
    url: str = request.getfixturevalue("_ledger_postgres_database")
    yield url
    _reset_postgres_schema(url)


@pytest.fixture
def consent_ledger(ledger_url: str) -> Iterator[ConsentLedger]:
    """A ledger on `ledger_url`, closed after the test."""
    ledger = ConsentLedger(ledger_url)
    try:
        yield ledger
    finally:
        ledger.close()
