"""Feedback store: one vote per (answer, user, kind), export, summary and forgetting, on both backends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.feedback import Confusion, FeedbackKind, FeedbackStore
from plipbot.errors import FeedbackError, PlipbotError

ANSWER = 500_000_000_000_000_001
OTHER_ANSWER = 500_000_000_000_000_002
GUILD = 900_000_000_000_000_001
OTHER_GUILD = 900_000_000_000_000_002
CHANNEL = 800_000_000_000_000_001
USER = 111_111_111_111_111_111
OTHER_USER = 222_222_222_222_222_222
MODEL = "PLIP (vinid/plip@67ade53d)"
PREDICTED = [("colon", 0.7), ("stomach", 0.2), ("liver", 0.1)]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def vote(
    store: FeedbackStore,
    kind: str,
    *,
    answer_id: int = ANSWER,
    guild_id: int = GUILD,
    user_id: int = USER,
    correct_label: str | None = None,
    predicted: list[tuple[str, float]] = PREDICTED,
    at: datetime | None = T0,
) -> None:
    store.record(answer_id, guild_id, CHANNEL, user_id, kind, correct_label, predicted, MODEL, at)


def test_record_returns_and_exports_the_vote(feedback_store: FeedbackStore) -> None:
    paris = timezone(timedelta(hours=2))
    row = feedback_store.record(
        ANSWER, GUILD, CHANNEL, USER, "helpful", None, PREDICTED, MODEL, T0.astimezone(paris)
    )
    assert row.kind is FeedbackKind.HELPFUL
    assert row.predicted == tuple(PREDICTED)
    assert row.predicted_label == "colon"
    assert row.model_label == MODEL
    assert row.created_at == row.updated_at == T0
    assert row.created_at.tzinfo is UTC
    assert feedback_store.export() == [row]
    assert row.as_dict()["created_at"] == "2024-05-01T12:00:00+00:00"


def test_a_repeated_vote_updates_the_same_row(feedback_store: FeedbackStore) -> None:
    vote(feedback_store, "correct_label", correct_label="stomach", at=T0)
    later = T0 + timedelta(minutes=5)
    vote(feedback_store, "correct_label", correct_label="  liver ", at=later)

    [row] = feedback_store.export()
    assert row.correct_label == "liver"
    assert (row.created_at, row.updated_at) == (T0, later)


def test_helpful_and_wrong_replace_each_other_and_corrections_stand_beside(
    feedback_store: FeedbackStore,
) -> None:
    vote(feedback_store, "helpful")
    vote(feedback_store, FeedbackKind.WRONG)
    vote(feedback_store, "correct_label", correct_label="stomach")
    vote(feedback_store, "helpful", user_id=OTHER_USER)
    kinds = [(row.user_id, row.kind) for row in feedback_store.export()]
    assert kinds == [
        (USER, FeedbackKind.WRONG),
        (USER, FeedbackKind.CORRECT_LABEL),
        (OTHER_USER, FeedbackKind.HELPFUL),
    ]


def test_the_default_time_is_now(feedback_store: FeedbackStore) -> None:
    before = datetime.now(UTC)
    row = feedback_store.record(ANSWER, GUILD, CHANNEL, USER, "helpful", None, [], MODEL)
    assert before <= row.created_at <= datetime.now(UTC)
    assert row.predicted_label is None  # an answer with similar cases only


@pytest.mark.parametrize(
    ("kind", "correct_label", "predicted", "message"),
    [
        ("thumbs up", None, PREDICTED, "Unknown feedback kind"),
        ("correct_label", None, PREDICTED, "Give the label"),
        ("correct_label", "   ", PREDICTED, "Give the label"),
        ("correct_label", "x" * 101, PREDICTED, "longer than"),
        ("helpful", "colon", PREDICTED, "only goes with"),
        ("wrong", None, [("colon", 1.5)], r"not in \[0, 1\]"),
        ("wrong", None, [("colon", float("nan"))], r"not in \[0, 1\]"),
    ],
)
def test_malformed_feedback_is_refused(
    feedback_store: FeedbackStore,
    kind: str,
    correct_label: str | None,
    predicted: list[tuple[str, float]],
    message: str,
) -> None:
    with pytest.raises(FeedbackError, match=message) as caught:
        vote(feedback_store, kind, correct_label=correct_label, predicted=predicted)
    assert isinstance(caught.value, PlipbotError)
    assert feedback_store.export() == []


def test_naive_times_and_bad_ids_are_bugs(feedback_store: FeedbackStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        vote(feedback_store, "helpful", at=datetime(2024, 5, 1, 12, 0))
    with pytest.raises(ValueError, match="answer_id"):
        vote(feedback_store, "helpful", answer_id=0)


def test_export_filters_by_server(feedback_store: FeedbackStore) -> None:
    vote(feedback_store, "helpful")
    vote(feedback_store, "wrong", answer_id=OTHER_ANSWER, guild_id=OTHER_GUILD)
    assert [row.guild_id for row in feedback_store.export()] == [GUILD, OTHER_GUILD]
    assert [row.answer_id for row in feedback_store.export(OTHER_GUILD)] == [OTHER_ANSWER]
    assert feedback_store.export(GUILD + 99) == []


def test_summary_counts_and_top_confusions(feedback_store: FeedbackStore) -> None:
    users = iter(range(1, 100))
    vote(feedback_store, "helpful", user_id=next(users))
    vote(feedback_store, "helpful", user_id=next(users))
    vote(feedback_store, "wrong", answer_id=OTHER_ANSWER, user_id=next(users))
    for label in ("Stomach", "stomach", "liver"):  # case-insensitively one confusion
        vote(feedback_store, "correct_label", correct_label=label, user_id=next(users))
    vote(feedback_store, "correct_label", correct_label="COLON", user_id=next(users))  # agrees: no confusion
    vote(
        feedback_store,
        "correct_label",
        correct_label="colon",
        guild_id=OTHER_GUILD,
        user_id=next(users),
        predicted=[("liver", 0.4), ("colon", 0.6)],  # the top label is the most probable, not the first
    )

    summary = feedback_store.summary(GUILD)
    assert (summary.guild_id, summary.answers) == (GUILD, 2)
    assert (summary.helpful, summary.wrong, summary.corrections) == (2, 1, 4)
    assert summary.top_confusions == (Confusion("colon", "Stomach", 2), Confusion("colon", "liver", 1))
    assert feedback_store.summary(GUILD, top=1).top_confusions[0].count == 2
    everywhere = feedback_store.summary()
    assert everywhere.corrections == 5
    assert everywhere.top_confusions == summary.top_confusions
    empty = feedback_store.summary(GUILD + 99)
    assert (empty.answers, empty.helpful, empty.wrong, empty.corrections) == (0, 0, 0, 0)
    assert empty.top_confusions == ()


def test_forget_user_deletes_only_their_rows(feedback_store: FeedbackStore) -> None:
    vote(feedback_store, "helpful")
    vote(feedback_store, "correct_label", correct_label="liver")
    vote(feedback_store, "wrong", answer_id=OTHER_ANSWER, guild_id=OTHER_GUILD)
    vote(feedback_store, "helpful", user_id=OTHER_USER)

    assert feedback_store.forget_user(USER) == 3
    assert feedback_store.forget_user(USER) == 0
    assert [row.user_id for row in feedback_store.export()] == [OTHER_USER]


def test_feedback_survives_a_new_store(bot_db_url: str) -> None:
    with FeedbackStore(bot_db_url) as store:
        vote(store, "correct_label", correct_label="liver")
        [written] = store.export()
    with FeedbackStore(bot_db_url) as reopened:
        assert reopened.export() == [written]


def test_simultaneous_identical_votes_make_one_row(bot_db_url: str) -> None:
    """A double click lands on two workers: both upsert the same vote, one row results."""
    with FeedbackStore(bot_db_url) as first, FeedbackStore(bot_db_url) as second:
        barrier = threading.Barrier(2)

        def worker(store: FeedbackStore) -> None:
            barrier.wait()
            vote(store, "correct_label", correct_label="liver")

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(worker, [first, second]))
        assert len(first.export()) == 1
