"""The examples store runs every test on SQLite and on PostgreSQL, like the bot's other stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from learning.examples import ExamplesStore
from tests.postgres import BACKENDS, sqlite_or_postgres_url, temporary_database


@pytest.fixture(scope="session")
def _learning_postgres_database() -> Iterator[str]:
    with temporary_database("plipbot_learning_test", "examples store") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def examples_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    yield from sqlite_or_postgres_url(
        request,
        tmp_path_factory,
        folder="learning",
        filename="bot.sqlite3",
        database_fixture="_learning_postgres_database",
    )


@pytest.fixture
def examples_store(examples_db_url: str) -> Iterator[ExamplesStore]:
    with ExamplesStore(examples_db_url) as store:
        yield store
