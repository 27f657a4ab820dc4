"""Corpus tasks (answer, search, ingest_post, withdraw) through the task path in embedded mode, and
through a real worker process on Redis. The model is a random tiny CLIP: NOT PLIP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plipbot.composition import Container
from tests import imagegen
from tests.embedded_settings import embedded_settings
from workers.case_contracts import (
    AnswerRequest,
    AnswerResult,
    IngestPostRequest,
    IngestPostResult,
    SearchRequest,
    SearchResult,
    WithdrawRequest,
    WithdrawResult,
)
from workers.client import TaskClient
from workers.contracts import TaskError

GUILD, OTHER = 501, 502
ALICE = 71


@pytest.fixture
def container(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Container]:
    c = Container(embedded_settings(tiny_checkpoint, tmp_path / "data"))
    yield c
    c.task_client.close()
    c.close()


def regions() -> list[bytes]:
    base = imagegen.ihc()
    return [imagegen.encode(base.crop((x, y, x + 200, y + 200))) for x, y in ((0, 0), (300, 0), (0, 300))]


def ingest(
    client: TaskClient, data: bytes, message: int, caption: str, guild: int = GUILD
) -> IngestPostResult:
    result = client.ingest_post(
        IngestPostRequest(
            image=client.upload(data),
            guild_id=guild,
            channel_id=9,
            message_id=message,
            attachment_id=1,
            author_id=ALICE,
            created_at=datetime.now(UTC),
            caption=caption,
            jump_link=f"https://discord.com/channels/{guild}/9/{message}",
            filename=f"m{message}.png",
        )
    )
    assert isinstance(result, IngestPostResult), result
    return result


def test_ingest_answer_search_withdraw_round_trip(container: Container) -> None:
    client = container.task_client
    images = regions()
    no_consent = ingest(client, images[0], 1, "before consent")
    assert no_consent.outcome == "no_consent"
    container.consent_ledger.grant(ALICE, GUILD, "server")
    first = ingest(client, images[0], 2, "tubular adenoma")
    second = ingest(client, images[1], 3, "lymph node")
    repost = ingest(client, images[0], 4, "same again")
    assert (first.outcome, second.outcome, repost.outcome) == ("ingested", "ingested", "duplicate")
    assert repost.duplicate_of == first.point_id

    answer = client.answer(
        AnswerRequest(
            image=client.upload(images[0]), preset="kather", guild_id=GUILD, exclude_message_id=None, k=3
        )
    )
    assert isinstance(answer, AnswerResult), answer
    assert len(answer.suggest.suggestions) == 3 and answer.suggest.label_set == "kather"
    assert answer.cases[0].id == first.point_id and answer.cases[0].score > 0.99
    assert answer.cases[0].link and answer.cases[0].author_id == ALICE
    own_excluded = client.answer(
        AnswerRequest(image=client.upload(images[0]), guild_id=GUILD, exclude_message_id=2)
    )
    assert isinstance(own_excluded, AnswerResult)
    assert first.point_id not in {c.id for c in own_excluded.cases}
    elsewhere = client.answer(AnswerRequest(image=client.upload(images[0]), guild_id=OTHER))
    assert isinstance(elsewhere, AnswerResult) and elsewhere.cases == []  # private to GUILD

    by_text = client.search(SearchRequest(mode="text", text="lymph node", guild_id=GUILD, k=5))
    by_caption = client.search(SearchRequest(mode="captions", image=client.upload(images[1]), guild_id=GUILD))
    assert isinstance(by_text, SearchResult) and isinstance(by_caption, SearchResult)
    assert {c.id for c in by_text.cases} == {first.point_id, second.point_id}
    assert by_text.model.name == "local"

    withdrawn = client.withdraw(WithdrawRequest(user_id=ALICE, guild_id=GUILD))
    assert isinstance(withdrawn, WithdrawResult) and withdrawn.deleted == 2
    after = client.search(SearchRequest(mode="image", image=client.upload(images[0]), guild_id=GUILD))
    assert isinstance(after, SearchResult) and after.cases == []
    assert list(container.thumbnails.ids()) == []
    again = client.withdraw(WithdrawRequest(user_id=ALICE))  # idempotent
    assert isinstance(again, WithdrawResult) and again.deleted == 0


def test_bad_requests_are_typed_errors(container: Container) -> None:
    client = container.task_client
    corrupt = client.answer(AnswerRequest(image=client.upload(b"\x89PNG\r\n\x1a\nbroken"), guild_id=GUILD))
    assert isinstance(corrupt, TaskError) and corrupt.code == "invalid_image"
    unknown = client.answer(AnswerRequest(image=client.upload(regions()[0]), preset="nope", guild_id=GUILD))
    assert isinstance(unknown, TaskError) and unknown.code == "label_set"
    with pytest.raises(ValueError, match="text search needs"):
        SearchRequest(mode="text", guild_id=GUILD)
