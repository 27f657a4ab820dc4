"""Fixtures for the ingest tests.

Consent ledger: every ledger test runs once on SQLite and once on PostgreSQL (one suite, every backend),
because the two differ exactly where consent bugs hide: time zones, locking and partial unique indexes.
PostgreSQL gets a fresh database per test session, dropped at the end; each test starts from an empty
schema (see tests/postgres.py for the server, skipping and CI rules).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ingest.consent_ledger import ConsentLedger
from tests.postgres import BACKENDS, sqlite_or_postgres_url, temporary_database


@pytest.fixture(scope="session")
def _ledger_postgres_database() -> Iterator[str]:
    """A database of our own for this test session, so parallel sessions and leftovers never collide."""
    with temporary_database("plipbot_test", "ledger") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty ledger database URL; SQLite sits in a folder that does not exist yet (the ledger makes it)."""
    yield from sqlite_or_postgres_url(
        request,
        tmp_path_factory,
        folder="ledger",
        filename="consent.sqlite3",
        database_fixture="_ledger_postgres_database",
    )


@pytest.fixture
def consent_ledger(ledger_url: str) -> Iterator[ConsentLedger]:
    """A ledger on `ledger_url`, closed after the test."""
    ledger = ConsentLedger(ledger_url)
    try:
        yield ledger
    finally:
        ledger.close()
