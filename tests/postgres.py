"""PostgreSQL for the tests: one fresh database per suite and session, dropped at the end.

The consent ledger, the bot's stores and the examples store run every test on SQLite and on
PostgreSQL (`BACKENDS`, `sqlite_or_postgres_url`). Point
`PLIPBOT_TEST_POSTGRES_URL` at another server's admin database to use it; it is read at import,
because the autouse isolation fixture in tests/conftest.py clears PLIPBOT_* variables before the first
test asks for a database. Without a reachable PostgreSQL the tests are skipped, except under CI,
where they fail: CI must start the service.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

POSTGRES_URL_ENV = "PLIPBOT_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_ADMIN_URL = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_ADMIN_URL)


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def admin_engine(url: str) -> Engine:
    """AUTOCOMMIT, because CREATE/DROP DATABASE cannot run inside a transaction."""
    psycopg = make_url(url).get_driver_name() in {"psycopg", "psycopg2"}
    connect_args = {"connect_timeout": 3} if psycopg else {}
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args=connect_args)


@contextmanager
def temporary_database(prefix: str, what: str) -> Iterator[str]:
    """Create `<prefix>_<random>` on the admin server and yield its URL; skip (or, under CI, fail)
    when the server is unreachable; drop the database afterwards."""
    engine = admin_engine(POSTGRES_ADMIN_URL)
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except (exc.OperationalError, exc.InterfaceError) as err:
        engine.dispose()
        shown = make_url(POSTGRES_ADMIN_URL).render_as_string(hide_password=True)
        reason = f"PostgreSQL is unreachable at {shown} ({type(err.orig).__name__})"
        if running_in_ci():
            pytest.fail(f"{reason}; CI is set, so the PostgreSQL service must be running.")
        pytest.skip(f"{reason}; start it or set {POSTGRES_URL_ENV} to run the PostgreSQL {what} tests.")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


def reset_schema(url: str) -> None:
    """Empty the session database between tests (much cheaper than a new database per test)."""
    engine = admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()


# The params of a database URL fixture: every store test runs on SQLite, and on PostgreSQL as integration.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


def sqlite_or_postgres_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    folder: str,
    filename: str,
    database_fixture: str,
) -> Iterator[str]:
    """The body of a `params=BACKENDS` fixture: an empty database URL. SQLite sits in a folder that does
    not exist yet (the store makes it); PostgreSQL is the session database that `database_fixture`
    yields, its schema emptied after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp(folder) / 'data' / filename}"
        return
    url: str = request.getfixturevalue(database_fixture)
    yield url
    reset_schema(url)
