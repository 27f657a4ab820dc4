"""The examples store runs every test on SQLite and on PostgreSQL, like the bot's other stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from learning.examples import ExamplesStore
from tests.postgres import reset_schema, temporary_database


@pytest.fixture(scope="session")
def _learning_postgres_database() -> Iterator[str]:
    with temporary_database("plipbot_learning_test", "examples store") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def examples_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('learning') / 'data' / 'bot.sqlite3'}"
        return
    url: str = request.getfixturevalue("_learning_postgres_database")
    yield url
    reset_schema(url)


@pytest.fixture
def examples_store(examples_db_url: str) -> Iterator[ExamplesStore]:
    with ExamplesStore(examples_db_url) as store:
        yield store
