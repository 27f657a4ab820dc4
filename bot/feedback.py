"""Feedback on the bot's answers (helpful, wrong, the correct label), kept to evaluate the model later.

Each row keeps what the model predicted and which weights answered (`model_label`, e.g.
"PLIP (vinid/plip@67ade53d)"), so feedback stays interpretable after the model or the label set changes.
Feedback holds no images and no message text. It is still personal data: `forget_user` deletes a user's
rows, alongside the consent withdrawal that deletes their corpus posts.

Votes: one per (answer, user, kind); voting again updates it. "helpful" and "wrong" are the two sides of
one opinion, so recording one withdraws the other (a changed mind, not two votes). A corrected label
stands beside either.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bot.guild_config import BOT_BACKENDS, bot_database_url
from model.zeroshot import MAX_LABEL_CHARS, MAX_LABELS
from plipbot.errors import FeedbackError
from plipbot.sqldb import RowId, SqlStore, UtcDateTime, as_utc, snowflake

if TYPE_CHECKING:
    from plipbot.settings import Settings

MAX_MODEL_LABEL_CHARS = 200
DEFAULT_TOP_CONFUSIONS = 10


class FeedbackKind(StrEnum):
    """What a user said about an answer."""

    HELPFUL = "helpful"
    WRONG = "wrong"
    CORRECT_LABEL = "correct_label"
    """The user gave the label they think is right (`correct_label`)."""


_OPPOSITE = {FeedbackKind.HELPFUL: FeedbackKind.WRONG, FeedbackKind.WRONG: FeedbackKind.HELPFUL}


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One vote, as stored and exported."""

    id: int
    answer_id: int
    """The Discord id of the bot's answer message."""
    guild_id: int
    channel_id: int
    user_id: int
    kind: FeedbackKind
    correct_label: str | None
    predicted: tuple[tuple[str, float], ...]
    """(label, probability) pairs the answer showed, as given."""
    model_label: str
    created_at: datetime
    updated_at: datetime
    """Equal to `created_at` until the user votes the same kind again."""

    @property
    def predicted_label(self) -> str | None:
        """The most probable predicted label (None when the answer had no label suggestions)."""
        return _top_label(self.predicted)

    def as_dict(self) -> dict[str, Any]:
        """JSON form for exports (times in ISO 8601, UTC)."""
        return {
            "id": self.id,
            "answer_id": self.answer_id,
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "user_id": self.user_id,
            "kind": self.kind.value,
            "correct_label": self.correct_label,
            "predicted": [[label, probability] for label, probability in self.predicted],
            "model_label": self.model_label,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Confusion:
    """How often users corrected the model's top label `predicted` to `correct`."""

    predicted: str
    correct: str
    count: int


@dataclass(frozen=True, slots=True)
class FeedbackSummary:
    """Counts for one server (or all, `guild_id` None) and the most frequent corrections."""

    guild_id: int | None
    answers: int
    """Distinct answers that received any feedback."""
    helpful: int
    wrong: int
    corrections: int
    top_confusions: tuple[Confusion, ...]
    """Most frequent first; corrections that agree with the top prediction are not confusions."""


def _top_label(predicted: Sequence[tuple[str, float]]) -> str | None:
    """The label with the highest probability (the first on ties), whatever order the pairs are in."""
    best: tuple[str, float] | None = None
    for label, probability in predicted:
        if best is None or probability > best[1]:
            best = (label, probability)
    return None if best is None else best[0]


def _rank_confusions(pairs: Sequence[tuple[str | None, str | None, int]]) -> tuple[Confusion, ...]:
    """Merge (predicted, correct, count) groups case-insensitively, drop agreements, most frequent first.

    The most frequent spelling of a pair is the one shown (then code-point order), so output is stable
    whatever order the database grouped in.
    """
    ordered = sorted(pairs, key=lambda pair: (-pair[2], pair[0] or "", pair[1] or ""))
    merged: dict[tuple[str, str], Confusion] = {}
    for predicted, correct, count in ordered:
        if predicted is None or correct is None or predicted.casefold() == correct.casefold():
            continue
        key = (predicted.casefold(), correct.casefold())
        seen = merged.get(key)
        merged[key] = (
            Confusion(predicted, correct, count)
            if seen is None
            else Confusion(seen.predicted, seen.correct, seen.count + count)
        )
    return tuple(
        sorted(merged.values(), key=lambda c: (-c.count, c.predicted.casefold(), c.correct.casefold()))
    )


class _Base(DeclarativeBase):
    pass


class _FeedbackRow(_Base):
    __tablename__ = "bot_feedback"
    __table_args__ = (sa.UniqueConstraint("answer_id", "user_id", "kind", name="uq_bot_feedback_vote"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    answer_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    guild_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    channel_id: Mapped[int] = mapped_column(sa.BigInteger)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    correct_label: Mapped[str | None] = mapped_column(sa.String(MAX_LABEL_CHARS), nullable=True)
    predicted: Mapped[list[list[Any]]] = mapped_column(sa.JSON)
    predicted_label: Mapped[str | None] = mapped_column(sa.String(MAX_LABEL_CHARS), nullable=True)
    """The top predicted label, denormalised so `summary` can group in SQL."""
    model_label: Mapped[str] = mapped_column(sa.String(MAX_MODEL_LABEL_CHARS))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    def to_row(self) -> FeedbackRow:
        return FeedbackRow(
            id=self.id,
            answer_id=self.answer_id,
            guild_id=self.guild_id,
            channel_id=self.channel_id,
            user_id=self.user_id,
            kind=FeedbackKind(self.kind),
            correct_label=self.correct_label,
            predicted=tuple((str(label), float(probability)) for label, probability in self.predicted),
            model_label=self.model_label,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def _parse_kind(kind: FeedbackKind | str) -> FeedbackKind:
    """Accept the enum or its text (button payloads arrive as text)."""
    try:
        return FeedbackKind(kind)
    except ValueError:
        allowed = ", ".join(member.value for member in FeedbackKind)
        raise FeedbackError(f"Unknown feedback kind {kind!r}; use one of: {allowed}.") from None


def _check_correct_label(kind: FeedbackKind, correct_label: str | None) -> str | None:
    """A corrected label is required with `correct_label` feedback and refused with the others."""
    if kind is not FeedbackKind.CORRECT_LABEL:
        if correct_label is not None:
            raise FeedbackError(f"A corrected label only goes with '{FeedbackKind.CORRECT_LABEL}' feedback.")
        return None
    text = (correct_label or "").strip()
    if not text:
        raise FeedbackError("Give the label you think is correct.")
    if len(text) > MAX_LABEL_CHARS:
        raise FeedbackError(f"The corrected label is longer than {MAX_LABEL_CHARS} characters.")
    return text


def _check_predicted(predicted: Sequence[tuple[str, float]]) -> list[list[Any]]:
    """Predictions as JSON pairs; probabilities must be real numbers in [0, 1]."""
    if len(predicted) > MAX_LABELS:
        raise FeedbackError(f"At most {MAX_LABELS} predicted labels can be recorded.")
    pairs: list[list[Any]] = []
    for label, probability in predicted:
        value = float(probability)
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise FeedbackError(f"Probability {probability!r} of '{label}' is not in [0, 1].")
        pairs.append([str(label)[:MAX_LABEL_CHARS], value])
    return pairs


class FeedbackStore(SqlStore):
    """Durable feedback on answers, for evaluation."""

    metadata = _Base.metadata
    database_name = "feedback database"
    error = FeedbackError
    backends = BOT_BACKENDS
    unreachable_message = "The feedback database is unreachable; try again later."

    @classmethod
    def from_settings(cls, settings: Settings) -> FeedbackStore:
        """The store in the bot's database (`bot.guild_config.bot_database_url`)."""
        return cls(bot_database_url(settings))

    def record(
        self,
        answer_id: int,
        guild_id: int,
        channel_id: int,
        user_id: int,
        kind: FeedbackKind | str,
        correct_label: str | None,
        predicted: Sequence[tuple[str, float]],
        model_label: str,
        created_at: datetime | None = None,
    ) -> FeedbackRow:
        """Record (or update) a user's vote of `kind` on an answer; returns the stored row.

        Voting the same kind again updates the row (a new corrected label, `updated_at`) and keeps its
        `created_at`. `created_at` defaults to now and must be timezone-aware.
        """
        for name, value in (
            ("answer_id", answer_id),
            ("guild_id", guild_id),
            ("channel_id", channel_id),
            ("user_id", user_id),
        ):
            snowflake(name, value)
        parsed_kind = _parse_kind(kind)
        label = _check_correct_label(parsed_kind, correct_label)
        pairs = _check_predicted(predicted)
        model = model_label.strip()[:MAX_MODEL_LABEL_CHARS]
        when = datetime.now(UTC) if created_at is None else as_utc(created_at, "created_at")

        def change(session: Session) -> FeedbackRow:
            opposite = _OPPOSITE.get(parsed_kind)
            if opposite is not None:
                session.execute(
                    sa.delete(_FeedbackRow).where(
                        _FeedbackRow.answer_id == answer_id,
                        _FeedbackRow.user_id == user_id,
                        _FeedbackRow.kind == opposite.value,
                    )
                )
            row = session.scalars(
                sa.select(_FeedbackRow)
                .where(
                    _FeedbackRow.answer_id == answer_id,
                    _FeedbackRow.user_id == user_id,
                    _FeedbackRow.kind == parsed_kind.value,
                )
                .with_for_update()
            ).one_or_none()
            if row is None:
                row = _FeedbackRow(
                    answer_id=answer_id, user_id=user_id, kind=parsed_kind.value, created_at=when
                )
                session.add(row)
            row.guild_id = guild_id
            row.channel_id = channel_id
            row.correct_label = label
            row.predicted = pairs
            row.predicted_label = _top_label([(str(lb), float(p)) for lb, p in pairs])
            row.model_label = model
            row.updated_at = max(when, row.created_at)
            session.flush()
            return row.to_row()

        return self._write(change)

    def export(self, guild_id: int | None = None) -> list[FeedbackRow]:
        """Every vote (of one server, or all), in the order first recorded."""
        with self._transaction(write=False) as session:
            statement = sa.select(_FeedbackRow).order_by(_FeedbackRow.id)
            if guild_id is not None:
                statement = statement.where(_FeedbackRow.guild_id == guild_id)
            return [row.to_row() for row in session.scalars(statement)]

    def summary(self, guild_id: int | None = None, *, top: int = DEFAULT_TOP_CONFUSIONS) -> FeedbackSummary:
        """Vote counts and the `top` most frequent corrections predicted -> correct.

        Corrections are compared case-insensitively, so "Colon" and "colon" count as one, and a
        "correction" to the label the model already put first is agreement, not a confusion.
        """
        scope = [] if guild_id is None else [_FeedbackRow.guild_id == guild_id]
        with self._transaction(write=False) as session:
            counts: Mapping[str, int] = {
                kind: count
                for kind, count in session.execute(
                    sa.select(_FeedbackRow.kind, sa.func.count()).where(*scope).group_by(_FeedbackRow.kind)
                ).all()
            }
            answers = session.scalar(
                sa.select(sa.func.count(sa.distinct(_FeedbackRow.answer_id))).where(*scope)
            )
            pairs = session.execute(
                sa.select(_FeedbackRow.predicted_label, _FeedbackRow.correct_label, sa.func.count())
                .where(
                    *scope,
                    _FeedbackRow.kind == FeedbackKind.CORRECT_LABEL.value,
                    _FeedbackRow.predicted_label.is_not(None),
                )
                .group_by(_FeedbackRow.predicted_label, _FeedbackRow.correct_label)
            ).all()
        ranked = _rank_confusions([(row[0], row[1], row[2]) for row in pairs])
        return FeedbackSummary(
            guild_id=guild_id,
            answers=answers or 0,
            helpful=counts.get(FeedbackKind.HELPFUL.value, 0),
            wrong=counts.get(FeedbackKind.WRONG.value, 0),
            corrections=counts.get(FeedbackKind.CORRECT_LABEL.value, 0),
            top_confusions=ranked[: max(top, 0)],
        )

    store_name = "feedback"
    """As a `plipbot.user_data.UserDataStore`."""

    def forget_user(self, user_id: int, guild_id: int | None = None) -> int:
        """Delete every feedback row of a user in `guild_id` (every server when None); returns how many."""
        snowflake("user_id", user_id)
        statement = sa.delete(_FeedbackRow).where(_FeedbackRow.user_id == user_id)
        if guild_id is not None:
            statement = statement.where(_FeedbackRow.guild_id == guild_id)
        with self._transaction(write=True) as session:
            return len(session.scalars(statement.returning(_FeedbackRow.id)).all())

    def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        """Delete the votes on answers that were deleted on Discord (a row's `answer_id` is the bot's
        answer message); returns how many."""
        if not message_ids:
            return 0
        statement = sa.delete(_FeedbackRow).where(
            _FeedbackRow.guild_id == guild_id, _FeedbackRow.answer_id.in_(sorted(set(message_ids)))
        )
        with self._transaction(write=True) as session:
            return len(session.scalars(statement.returning(_FeedbackRow.id)).all())
