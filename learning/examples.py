"""Confirmed examples: images a server's moderators labelled, kept as embeddings to adapt its answers.

Each example records the server, the label set it was confirmed under (a stable hash,
`label_set_key`), the label, the source Discord message and attachment, who posted the image, who
confirmed it, when, and the image's embedding for each model revision that embedded it. Never pixels:
an embedding cannot be shown back, and a new model revision simply has no vectors until images are
confirmed again (or come from the corpus, whose vectors exist per model).

Who may be kept is decided by the caller (`learning.service`): the poster's consent, or the image being
a corpus case already. This store only keeps and erases. It is a `plipbot.user_data.UserDataStore`:
erasure by poster (withdrawal), by message (deleted on Discord) and by server (the bot was removed).

Every change bumps the server's `revision`, so a worker holding a fitted adapter in memory knows with
one primary-key read whether it is still current.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from model.zeroshot import MAX_LABEL_CHARS, LabelSet
from plipbot.errors import PlipbotError
from plipbot.sqldb import RowId, SqlStore, UtcDateTime, snowflake

if TYPE_CHECKING:
    from plipbot.settings import Settings

SERVER_WIDE = 0
"""`channel_id` of a server-wide learning switch (snowflakes are never 0)."""
MAX_MODEL_KEY_CHARS = 200


class ExamplesError(PlipbotError):
    """An example cannot be stored as asked (a bad label or vector), or a change lost a race."""


class ExampleOrigin(StrEnum):
    """How an example was confirmed."""

    MODERATOR = "moderator"
    """A moderator used "Confirm label…"."""
    FEEDBACK = "feedback"
    """A moderator approved a member's "Correct label…" feedback."""


class ReviewDecision(StrEnum):
    """A moderator's decision on a member's correction."""

    APPROVED = "approved"
    REJECTED = "rejected"


def label_set_key(label_set: LabelSet) -> str:
    """A stable id of a label set: its labels (case-insensitive, in order) and their templates.

    The set's name is left out (renaming changes nothing the model sees).
    """
    payload = json.dumps(
        [[label.text.strip().casefold(), list(label.templates)] for label in label_set.labels],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def model_key(name: str, revision: str) -> str:
    """Which weights embedded a vector ("plip@67ade53d..."); vectors of other weights are never mixed."""
    return f"{name}@{revision}"[:MAX_MODEL_KEY_CHARS]


@dataclass(frozen=True, slots=True)
class Example:
    """One confirmed example (without its vectors)."""

    id: int
    guild_id: int
    channel_id: int
    label_set_key: str
    label: str
    message_id: int
    attachment_id: int
    poster_id: int
    confirmer_id: int | None
    """None once the confirming moderator's own data was erased."""
    origin: ExampleOrigin
    confirmed_at: datetime


@dataclass(frozen=True)
class ExampleSet:
    """A server's examples that have a vector for one model, with those vectors (row i is example i)."""

    guild_id: int
    revision: int
    examples: tuple[Example, ...]
    vectors: np.ndarray
    """(n, d) float32."""

    def __len__(self) -> int:
        return len(self.examples)

    def label_counts(self) -> Counter[str]:
        """Examples per label, case-insensitively (keys casefolded)."""
        return Counter(example.label.casefold() for example in self.examples)


class ExampleTables(DeclarativeBase):
    """The declarative base of the learning tables (their own metadata)."""


class ExampleRow(ExampleTables):
    __tablename__ = "learning_examples"
    __table_args__ = (
        sa.UniqueConstraint("guild_id", "message_id", "attachment_id", name="uq_learning_example_source"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    guild_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    channel_id: Mapped[int] = mapped_column(sa.BigInteger)
    label_set_key: Mapped[str] = mapped_column(sa.String(32))
    label: Mapped[str] = mapped_column(sa.String(MAX_LABEL_CHARS))
    message_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    attachment_id: Mapped[int] = mapped_column(sa.BigInteger)
    poster_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    confirmer_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True, index=True)
    origin: Mapped[str] = mapped_column(sa.String(16))
    confirmed_at: Mapped[datetime] = mapped_column(UtcDateTime())

    def to_example(self) -> Example:
        return Example(
            id=self.id,
            guild_id=self.guild_id,
            channel_id=self.channel_id,
            label_set_key=self.label_set_key,
            label=self.label,
            message_id=self.message_id,
            attachment_id=self.attachment_id,
            poster_id=self.poster_id,
            confirmer_id=self.confirmer_id,
            origin=ExampleOrigin(self.origin),
            confirmed_at=self.confirmed_at,
        )


class EmbeddingRow(ExampleTables):
    """One example's image embedding under one model revision (float32 bytes)."""

    __tablename__ = "learning_embeddings"

    example_id: Mapped[int] = mapped_column(
        RowId, sa.ForeignKey("learning_examples.id", ondelete="CASCADE"), primary_key=True
    )
    model_key: Mapped[str] = mapped_column(sa.String(MAX_MODEL_KEY_CHARS), primary_key=True)
    dim: Mapped[int] = mapped_column(sa.Integer)
    vector: Mapped[bytes] = mapped_column(sa.LargeBinary)


class RevisionRow(ExampleTables):
    """Bumped on every change to a server's examples (adapter caches compare it)."""

    __tablename__ = "learning_revisions"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(sa.BigInteger)


class SwitchRow(ExampleTables):
    """`/labels learning on|off` for a server (`channel_id` SERVER_WIDE) or a channel."""

    __tablename__ = "learning_switches"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    updated_by: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    """The moderator who set it (None once their own data was erased)."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReviewRow(ExampleTables):
    """A moderator's decision on one "Correct label…" feedback row (so it leaves the review list)."""

    __tablename__ = "learning_reviews"

    feedback_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    decision: Mapped[str] = mapped_column(sa.String(16))
    moderator_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True, index=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())


def _vector_bytes(vector: Sequence[float] | np.ndarray) -> tuple[int, bytes]:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ExamplesError("An example needs a finite, non-empty image embedding.")
    norm = float(np.linalg.norm(array))
    if norm == 0.0:
        raise ExamplesError("An example's image embedding cannot be all zeros.")
    return int(array.size), (array / norm).astype(np.float32).tobytes()


def _check_label(label: str) -> str:
    text = " ".join(label.split())
    if not text:
        raise ExamplesError("Give the label to confirm.")
    if len(text) > MAX_LABEL_CHARS:
        raise ExamplesError(f"The label is longer than {MAX_LABEL_CHARS} characters.")
    return text


class ExamplesStore(SqlStore):
    """Durable confirmed examples, the learning switches and the review decisions."""

    metadata = ExampleTables.metadata
    database_name = "examples database"
    error = ExamplesError
    backends = frozenset({"sqlite", "postgresql"})
    unreachable_message = "The examples database is unreachable; try again later."

    @classmethod
    def from_settings(cls, settings: Settings) -> ExamplesStore:
        """The store in the bot's database, where the workers read it too."""
        from bot.guild_config import bot_database_url

        return cls(bot_database_url(settings))

    # --- UserDataStore ----------------------------------------------------------------------------------

    @property
    def store_name(self) -> str:
        return "examples"

    def forget_user(self, user_id: int, guild_id: int | None) -> int:
        """Delete the examples `user_id` posted; scrub them as the confirmer of others' examples.

        Returns the examples deleted plus those whose confirmer was scrubbed. Review decisions and
        learning switches keep no member's data but the moderator's id, which is scrubbed too.
        """
        snowflake("user_id", user_id)
        if guild_id is not None:
            snowflake("guild_id", guild_id)

        def change(session: Session) -> int:
            scope = [] if guild_id is None else [ExampleRow.guild_id == guild_id]
            posted = self._delete_examples(session, ExampleRow.poster_id == user_id, *scope)
            scrubbed = session.execute(
                sa.update(ExampleRow)
                .where(ExampleRow.confirmer_id == user_id, *scope)
                .values(confirmer_id=None)
                .returning(ExampleRow.guild_id)
            ).all()
            self._bump(session, {row[0] for row in scrubbed})
            review_scope = [] if guild_id is None else [ReviewRow.guild_id == guild_id]
            session.execute(
                sa.update(ReviewRow)
                .where(ReviewRow.moderator_id == user_id, *review_scope)
                .values(moderator_id=None)
            )
            switch_scope = [] if guild_id is None else [SwitchRow.guild_id == guild_id]
            session.execute(
                sa.update(SwitchRow)
                .where(SwitchRow.updated_by == user_id, *switch_scope)
                .values(updated_by=None)
            )
            return posted + len(scrubbed)

        return self._write(change)

    def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        """Delete the examples whose source post was deleted on Discord."""
        snowflake("guild_id", guild_id)
        ids = sorted({int(m) for m in message_ids})
        if not ids:
            return 0
        return self._write(
            lambda session: self._delete_examples(
                session, ExampleRow.guild_id == guild_id, ExampleRow.message_id.in_(ids)
            )
        )

    def forget_guild(self, guild_id: int) -> int:
        """Delete everything about a server (the bot was removed from it): examples, switches, reviews."""
        snowflake("guild_id", guild_id)

        def change(session: Session) -> int:
            deleted = self._delete_examples(session, ExampleRow.guild_id == guild_id)
            session.execute(sa.delete(SwitchRow).where(SwitchRow.guild_id == guild_id))
            session.execute(sa.delete(ReviewRow).where(ReviewRow.guild_id == guild_id))
            self._bump(session, {guild_id})
            return deleted

        return self._write(change)

    # --- examples ----------------------------------------------------------------------------------------

    def confirm(
        self,
        *,
        guild_id: int,
        channel_id: int,
        label_set_key: str,
        label: str,
        message_id: int,
        attachment_id: int,
        poster_id: int,
        confirmer_id: int,
        origin: ExampleOrigin | str,
        model_key: str,
        vector: Sequence[float] | np.ndarray,
        confirmed_at: datetime | None = None,
    ) -> Example:
        """Keep (or relabel) the example for one attachment, with its embedding under `model_key`.

        Confirming the same attachment again replaces its label, confirmer and time (one example per
        image, the latest decision wins).
        """
        for name, value in (
            ("guild_id", guild_id),
            ("channel_id", channel_id),
            ("message_id", message_id),
            ("attachment_id", attachment_id),
            ("poster_id", poster_id),
            ("confirmer_id", confirmer_id),
        ):
            snowflake(name, value)
        text = _check_label(label)
        dim, blob = _vector_bytes(vector)
        kind = ExampleOrigin(origin)
        when = confirmed_at or datetime.now(UTC)

        def change(session: Session) -> Example:
            row = session.scalars(
                sa.select(ExampleRow)
                .where(
                    ExampleRow.guild_id == guild_id,
                    ExampleRow.message_id == message_id,
                    ExampleRow.attachment_id == attachment_id,
                )
                .with_for_update()
            ).one_or_none()
            if row is None:
                row = ExampleRow(
                    guild_id=guild_id, message_id=message_id, attachment_id=attachment_id, poster_id=poster_id
                )
                session.add(row)
            row.channel_id = channel_id
            row.label_set_key = label_set_key[:32]
            row.label = text
            row.poster_id = poster_id
            row.confirmer_id = confirmer_id
            row.origin = kind.value
            row.confirmed_at = when
            session.flush()
            embedding = session.get(EmbeddingRow, (row.id, model_key))
            if embedding is None:
                session.add(EmbeddingRow(example_id=row.id, model_key=model_key, dim=dim, vector=blob))
            else:
                embedding.dim, embedding.vector = dim, blob
            self._bump(session, {guild_id})
            return row.to_example()

        return self._write(change)

    def remove(self, guild_id: int, example_ids: Iterable[int]) -> int:
        """Delete examples of a server by id (a moderator undoing a confirmation)."""
        snowflake("guild_id", guild_id)
        ids = sorted({int(i) for i in example_ids})
        if not ids:
            return 0
        return self._write(
            lambda session: self._delete_examples(
                session, ExampleRow.guild_id == guild_id, ExampleRow.id.in_(ids)
            )
        )

    def examples(self, guild_id: int, model_key: str, *, limit: int | None = None) -> ExampleSet:
        """The server's examples that have a vector for `model_key` (the newest `limit`), oldest first."""
        snowflake("guild_id", guild_id)
        columns = ExampleRow.__table__.columns  # plain rows, not ORM objects: this runs on refits
        with self._transaction(write=False) as session:
            revision = self._revision(session, guild_id)
            statement = (
                sa.select(*columns, EmbeddingRow.dim, EmbeddingRow.vector)
                .join(EmbeddingRow, EmbeddingRow.example_id == ExampleRow.id)
                .where(ExampleRow.guild_id == guild_id, EmbeddingRow.model_key == model_key)
                .order_by(ExampleRow.id.desc())
            )
            if limit is not None:
                statement = statement.limit(limit)
            rows = list(reversed(session.execute(statement).all()))
        examples = tuple(
            Example(
                **{name: row._mapping[name] for name in Example.__slots__ if name != "origin"},
                origin=ExampleOrigin(row._mapping["origin"]),
            )
            for row in rows
        )
        dims = {row.dim for row in rows}
        if len(dims) > 1:  # one model revision has one dimension; anything else is corrupt
            raise ExamplesError("Stored example embeddings disagree in dimension; re-confirm the examples.")
        vectors = (
            np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32).reshape(len(rows), -1)
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        return ExampleSet(guild_id, revision, examples, vectors)

    def all_examples(self, guild_id: int) -> list[Example]:
        """Every example of a server (with or without vectors), oldest first."""
        snowflake("guild_id", guild_id)
        with self._transaction(write=False) as session:
            rows = session.scalars(
                sa.select(ExampleRow).where(ExampleRow.guild_id == guild_id).order_by(ExampleRow.id)
            ).all()
            return [row.to_example() for row in rows]

    def revision(self, guild_id: int) -> int:
        """The server's change counter (0 before its first example)."""
        snowflake("guild_id", guild_id)
        with self._transaction(write=False) as session:
            return self._revision(session, guild_id)

    # --- the learning switch --------------------------------------------------------------------------

    def learning_switch(self, guild_id: int, channel_id: int | None = None) -> bool | None:
        """The channel's explicit setting, else the server's, else None (the default rule applies)."""
        return self.state(guild_id, channel_id)[1]

    def state(self, guild_id: int, channel_id: int | None) -> tuple[int, bool | None]:
        """(revision, learning switch) in one read: what an answer checks before using its adapter."""
        snowflake("guild_id", guild_id)
        scopes = [SERVER_WIDE] if channel_id is None else [SERVER_WIDE, snowflake("channel_id", channel_id)]
        with self._transaction(write=False) as session:
            revision = self._revision(session, guild_id)
            switches = {
                row.channel_id: row.enabled
                for row in session.scalars(
                    sa.select(SwitchRow).where(
                        SwitchRow.guild_id == guild_id, SwitchRow.channel_id.in_(scopes)
                    )
                )
            }
        switch = switches.get(channel_id) if channel_id is not None else None
        return revision, switch if switch is not None else switches.get(SERVER_WIDE)

    def set_learning(
        self, guild_id: int, enabled: bool | None, *, channel_id: int | None = None, actor_id: int
    ) -> None:
        """Switch learning on or off for the server or one channel; None returns to the default rule."""
        snowflake("guild_id", guild_id)
        snowflake("actor_id", actor_id)
        scope = SERVER_WIDE if channel_id is None else snowflake("channel_id", channel_id)

        def change(session: Session) -> None:
            row = session.get(SwitchRow, (guild_id, scope), with_for_update=True)
            if enabled is None:
                if row is not None:
                    session.delete(row)
            elif row is None:
                session.add(
                    SwitchRow(
                        guild_id=guild_id,
                        channel_id=scope,
                        enabled=enabled,
                        updated_by=actor_id,
                        updated_at=datetime.now(UTC),
                    )
                )
            else:
                row.enabled, row.updated_by, row.updated_at = enabled, actor_id, datetime.now(UTC)
            self._bump(session, {guild_id})

        self._write(change)

    # --- reviews of members' corrections --------------------------------------------------------------

    def record_review(
        self, *, feedback_id: int, guild_id: int, decision: ReviewDecision | str, moderator_id: int
    ) -> None:
        """Remember a moderator's decision on a correction (the latest decision wins)."""
        snowflake("feedback_id", feedback_id)
        snowflake("guild_id", guild_id)
        snowflake("moderator_id", moderator_id)
        value = ReviewDecision(decision).value

        def change(session: Session) -> None:
            row = session.get(ReviewRow, feedback_id, with_for_update=True)
            if row is None:
                row = ReviewRow(feedback_id=feedback_id, guild_id=guild_id)
                session.add(row)
            row.decision, row.moderator_id, row.decided_at = value, moderator_id, datetime.now(UTC)

        self._write(change)

    def reviewed(self, guild_id: int) -> dict[int, ReviewDecision]:
        """Feedback ids of the server a moderator already decided on, with the decision."""
        snowflake("guild_id", guild_id)
        with self._transaction(write=False) as session:
            rows = session.execute(
                sa.select(ReviewRow.feedback_id, ReviewRow.decision).where(ReviewRow.guild_id == guild_id)
            ).all()
        return {int(row[0]): ReviewDecision(row[1]) for row in rows}

    # --- internals ----------------------------------------------------------------------------------

    @staticmethod
    def _revision(session: Session, guild_id: int) -> int:
        value = session.scalar(sa.select(RevisionRow.revision).where(RevisionRow.guild_id == guild_id))
        return int(value or 0)

    @staticmethod
    def _bump(session: Session, guild_ids: Iterable[int]) -> None:
        for guild_id in sorted(set(guild_ids)):
            row = session.get(RevisionRow, guild_id, with_for_update=True)
            if row is None:
                session.add(RevisionRow(guild_id=guild_id, revision=1))
            else:
                row.revision = row.revision + 1
        session.flush()

    def _delete_examples(self, session: Session, *criteria: sa.ColumnElement[bool]) -> int:
        """Delete matching examples and their embeddings (explicitly: SQLite does not cascade by
        default); bump the revision of every server that lost one."""
        found = session.execute(sa.select(ExampleRow.id, ExampleRow.guild_id).where(*criteria)).all()
        if not found:
            return 0
        ids = [row[0] for row in found]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            session.execute(sa.delete(EmbeddingRow).where(EmbeddingRow.example_id.in_(chunk)))
            session.execute(sa.delete(ExampleRow).where(ExampleRow.id.in_(chunk)))
        self._bump(session, {row[1] for row in found})
        return len(ids)
