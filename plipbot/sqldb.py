"""SQL plumbing shared by plipbot's small databases (the consent ledger, the bot's configuration and
feedback).

They run on SQLite by default and PostgreSQL in production, and all need the same care: timestamps
that stay timezone-aware on SQLite, enums stored as their text values, 64-bit ids that still
auto-increment on SQLite, SQLite writers that take the write lock at BEGIN instead of failing
with "database is locked" mid-transaction, and one short transaction per call. `SqlStore` is the base
every store derives from, so those rules are written once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.orm import Session, mapped_column

from plipbot.errors import PlipbotError, ServiceUnavailableError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

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


def snowflake(name: str, value: int) -> int:
    """Reject what is not a Discord id (None from a DM, a bool, 0) before it reaches a key."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer snowflake, got {value!r}")
    return value


class SqlStore:
    """Base of every SQL store: engine, tables, one short transaction per call, retry on a lost race.

    A subclass names its tables (`metadata`), what it is called in logs and errors (`database_name`),
    the error its configuration mistakes and lost races raise (`error`), the backends it accepts, and
    what people are told while it is down (`unreachable_message`).
    Thread-safe: each call runs in its own transaction from a connection pool.
    """

    metadata: ClassVar[sa.MetaData]
    database_name: ClassVar[str] = "database"
    error: ClassVar[type[PlipbotError]] = PlipbotError
    backends: ClassVar[frozenset[str] | None] = None
    race_message: ClassVar[str] = "This changed at the same moment from elsewhere; please try again."
    unreachable_message: ClassVar[str] = "The database is unreachable; try again later."

    def __init__(self, url: str) -> None:
        """Connect to `url` and create missing tables.

        Raises `error` for an unusable URL and ServiceUnavailableError if the database is down.
        """
        self._engine = create_engine(url, what=self.database_name, error=self.error, backends=self.backends)
        try:
            self.metadata.create_all(self._engine)
        except (exc.OperationalError, exc.InterfaceError) as err:
            self._engine.dispose()
            reason = type(err.orig).__name__
            log.warning("%s unreachable while creating tables: %s", self.database_name, reason)
            raise ServiceUnavailableError(self.unreachable_message) from err

    def close(self) -> None:
        """Release pooled connections (the store must not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def _dialect(self) -> str:
        return self._engine.dialect.name

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        """One session, one transaction, committed on success; a lost database becomes a short message."""
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                # Take the connection now so the SQLite hook sees the write flag before BEGIN.
                session.connection(execution_options={WRITE_TRANSACTION: write})
                yield session
        except (exc.OperationalError, exc.InterfaceError) as err:
            # The driver's message may echo the URL or a statement's parameters: log its type only.
            log.warning("%s unreachable: %s", self.database_name, type(err.orig).__name__)
            raise ServiceUnavailableError(self.unreachable_message) from err

    def _write(self, change: Callable[[Session], _T]) -> _T:
        """Run `change` in a write transaction, once more if a concurrent insert won a unique key.

        Read-modify-write calls lock the rows they read (FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on
        SQLite), but a row that does not exist yet cannot be locked: two first writers both insert, the
        loser's unique key fails, and its second try finds the winner's row and changes that.
        """
        try:
            with self._transaction(write=True) as session:
                return change(session)
        except exc.IntegrityError:
            log.info("concurrent write to the %s; retrying once", self.database_name)
        try:
            with self._transaction(write=True) as session:
                return change(session)
        except exc.IntegrityError as err:
            raise self.error(self.race_message) from err
