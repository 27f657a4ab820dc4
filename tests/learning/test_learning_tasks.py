"""The learning tasks through the task path in embedded mode (a random tiny CLIP: NOT PLIP): who may be
kept, what is kept (the embedding, never pixels), and /labels test's numbers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from plipbot.composition import Container
from tests import imagegen
from tests.embedded_settings import embedded_settings
from tests.learning.folders import CLASS_COLOURS, textured
from workers.case_contracts import IngestPostRequest, IngestPostResult
from workers.client import TaskClient
from workers.learning_contracts import (
    ConfirmExampleRequest,
    ConfirmExampleResult,
    LearningTestRequest,
    LearningTestResult,
)

GUILD, CHANNEL, POSTER, MOD = 601, 602, 71, 81
LABELS = ["tumor", "normal"]


@pytest.fixture
def container(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Container]:
    c = Container(embedded_settings(tiny_checkpoint, tmp_path / "data"))
    yield c
    c.close()


def picture(family: str, seed: int) -> bytes:
    return imagegen.encode(textured(CLASS_COLOURS[family], seed, size=96))


def confirm(
    client: TaskClient, data: bytes, message: int, label: str, posted_at: datetime
) -> ConfirmExampleResult:
    result = client.call(
        "plipbot.confirm_example",
        ConfirmExampleRequest(
            image=client.upload(data),
            guild_id=GUILD,
            channel_id=CHANNEL,
            message_id=message,
            attachment_id=1,
            poster_id=POSTER,
            confirmer_id=MOD,
            posted_at=posted_at,
            label=label,
            labels=LABELS,
        ),
        ConfirmExampleResult,
    )
    assert isinstance(result, ConfirmExampleResult), result
    return result


def test_kept_only_with_consent_or_as_a_corpus_case(container: Container) -> None:
    client = container.task_client
    now = datetime.now(UTC)
    refused = confirm(client, picture("stroma", 1), 11, "tumor", now)
    assert not refused.kept and "consented" in refused.reason
    assert container.examples_store.all_examples(GUILD) == []

    container.consent_ledger.grant(POSTER, GUILD, "server", actor_id=POSTER)
    before_consent = confirm(client, picture("stroma", 2), 12, "tumor", now - timedelta(days=1))
    assert not before_consent.kept  # consent covers posts from the moment it was given
    kept = confirm(client, picture("stroma", 3), 13, "tumor", datetime.now(UTC))
    assert kept.kept and kept.via == "consent" and kept.label_examples == 1 and kept.examples == 1

    # A corpus case is kept as such, with the corpus's own vector (no download, no second embedding).
    data = picture("lymphocytes", 4)
    ingested = client.ingest_post(
        IngestPostRequest(
            image=client.upload(data),
            guild_id=GUILD,
            channel_id=CHANNEL,
            message_id=14,
            attachment_id=1,
            author_id=POSTER,
            created_at=datetime.now(UTC),
            caption="lymphocyte-rich",
        )
    )
    assert isinstance(ingested, IngestPostResult) and ingested.outcome == "ingested", ingested
    corpus = confirm(client, data, 14, "normal", datetime.now(UTC))
    assert corpus.kept and corpus.via == "corpus"
    [case] = container.case_store.get([ingested.point_id])
    stored = container.examples_store.examples(GUILD, next(iter(_model_keys(container))))
    np.testing.assert_allclose(stored.vectors[-1], np.asarray(case.image_vector), atol=1e-6)


def _model_keys(container: Container) -> set[str]:
    from learning.examples import model_key

    identity = container.encoder.identity
    return {model_key(identity.name, identity.revision)}


def test_label_set_test_scores_the_examples(container: Container) -> None:
    client = container.task_client
    container.consent_ledger.grant(POSTER, GUILD, "server", actor_id=POSTER)
    for message, (family, label) in enumerate(
        [("stroma", "tumor"), ("stroma", "tumor"), ("lymphocytes", "normal"), ("lymphocytes", "normal")]
    ):
        assert confirm(client, picture(family, 20 + message), 20 + message, label, datetime.now(UTC)).kept
    result = client.call(
        "plipbot.learning_test",
        LearningTestRequest(guild_id=GUILD, channel_id=CHANNEL, labels=[*LABELS, "mucus"]),
        LearningTestResult,
    )
    assert isinstance(result, LearningTestResult), result
    assert result.examples == 4 and result.counts == [2, 2, 0] and result.ignored == 0
    assert result.zero_shot is not None and result.adapted is not None
    assert np.asarray(result.adapted.confusion).sum() == 4 and len(result.adapted.confusion) == 3
    assert result.adapted.accuracy >= result.zero_shot.accuracy
