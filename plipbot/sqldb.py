"""SQL plumbing shared by plipbot's small databases (the consent ledger, the bot's configuration).

Both run on SQLite by default and PostgreSQL in production, and both need the same care: timestamps
that stay timezone-aware on SQLite, enums stored as their text values, 64-bit ids that still
auto-increment on SQLite, and SQLite writers that take the write lock at BEGIN instead of failing
with "database is locked" mid-transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.orm import mapped_column

from plipbot.errors import PlipbotError

WRITE_TRANSACTION = "plipbot_ledger_write"
"""Execution option that marks a session's transaction as a write (BEGIN IMMEDIATE on SQLite)."""


def as_utc(value: datetime, name: str) -> datetime:
    """Reject naive datetimes: a naive time from a worker in another zone would silently shift consent."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so we store naive UTC text there and
    re-attach UTC on read (a naive value would otherwise compare wrongly with Discord's aware timestamps).
    """

    impl = sa.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value, "timestamp")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def enum_column(enum_class: type[StrEnum], *, nullable: bool = False) -> Any:
    """Store the enum's value ('server'), not its Python name, as plain text (no native PostgreSQL type
    to migrate when a value is added)."""
    return mapped_column(
        sa.Enum(
            enum_class,
            native_enum=False,
            length=16,
            values_callable=lambda members: [member.value for member in members],
            validate_strings=True,
        ),
        nullable=nullable,
    )


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def sqlite_parent_dir(url: URL) -> Path | None:
    """The folder a file-backed SQLite URL lives in; None for in-memory databases."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().parent


def serialise_sqlite_writers(engine: Engine) -> None:
    """Make SQLite write transactions take the write lock when they begin, not at their first write.

    pysqlite's default deferred BEGIN lets two writers both read "no active grant", after which one of
    them fails with "database is locked" instead of waiting. WAL keeps readers (`allows` on every
    upsert) from blocking on writers.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(WRITE_TRANSACTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


_BACKEND_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def create_engine(
    url: str, *, what: str, error: type[PlipbotError], backends: frozenset[str] | None = None
) -> Engine:
    """An engine for `url` with the settings both databases need; configuration mistakes (bad URL,
    unknown driver, unusable folder, a backend outside `backends`) raise `error` naming `what`."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise error(f"The {what} URL is not a valid database URL.") from None
    backend = parsed.get_backend_name()
    if backends is not None and backend not in backends:
        names = " or ".join(_BACKEND_NAMES.get(b, b) for b in sorted(backends, reverse=True))
        raise error(f"The {what} must be {names}, not {backend}.")
    try:
        driver = parsed.get_driver_name()  # loads the dialect: an unknown driver fails here
        connect_args: dict[str, Any] = {}
        if backend == "sqlite":
            parent = sqlite_parent_dir(parsed)
            if parent is not None:
                try:
                    parent.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise error(f"Cannot create the {what} folder {parent}: {err.strerror or err}.") from err
            connect_args["timeout"] = 30  # seconds a writer waits for the lock before giving up
        elif driver in {"psycopg", "psycopg2"}:
            connect_args["connect_timeout"] = 10  # fail fast instead of hanging on a dead host
        engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as err:
        raise error(f"The {what} URL names an unusable database driver ({backend}).") from err
    if backend == "sqlite":
        serialise_sqlite_writers(engine)
    return engine
