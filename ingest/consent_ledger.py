"""Consent ledger: who agreed to let their posts into the similar-case corpus, since when, and how widely.

The corpus may only grow from posts whose authors consented, so this ledger is the single source of truth
the ingest pipeline asks *at the moment it upserts a point* (a job queued before a withdrawal must not
slip through). It is durable (SQLite by default, PostgreSQL by URL) and keeps an append-only audit of
every grant, scope change, withdrawal and deletion, because "what did we hold about me, and when did you
delete it?" must be answerable long after the fact.

Rules that follow from consent being given at a point in time:

* A post is allowed only if a grant is active *now* and the post was made at or after that grant began.
  A re-grant after a withdrawal is a new row, so posts from the withdrawn gap (or from the earlier grant)
  stay out.
* Widening the scope (server -> shared) applies to posts made from then on; older posts of the same grant
  keep the narrower scope. Narrowing (shared -> server) applies to everything at once.

Callers get frozen dataclasses, never ORM objects: every call opens and closes its own session, so nothing
returned can lazily touch the database later (or from another thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from plipbot.errors import ConsentError
from plipbot.sqldb import RowId, SqlStore, UtcDateTime, as_utc, enum_column

if TYPE_CHECKING:
    from plipbot.settings import Settings


UNREACHABLE_MESSAGE = "The consent ledger database is unreachable; try again later."


class ConsentScope(StrEnum):
    """How far a user's posts may travel."""

    SERVER = "server"
    """Only the similar-case corpus of the server (guild) where the post was made."""
    SHARED = "shared"
    """The server's corpus and the public shared corpus."""


class AuditAction(StrEnum):
    """What an audit entry records."""

    GRANT = "grant"
    SCOPE_CHANGE = "scope_change"
    WITHDRAW = "withdraw"
    DELETE = "delete"
    IMPORT = "import"


@dataclass(frozen=True, slots=True)
class Consent:
    """One grant, from `granted_at` until `withdrawn_at` (None while it is active)."""

    id: int
    user_id: int
    guild_id: int
    scope: ConsentScope
    granted_at: datetime
    scope_since: datetime
    """When the current scope took effect: `granted_at`, or the latest scope change."""
    withdrawn_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the grant still holds (it has not been withdrawn)."""
        return self.withdrawn_at is None

    def scope_for(self, posted_at: datetime) -> ConsentScope | None:
        """The scope this grant gives a post made at `posted_at`, or None if it gives none.

        Pure, so the timing rules are testable without a database: consent covers posts from the moment
        it was given, and a widened scope only covers posts made after the widening.
        """
        posted_at = as_utc(posted_at, "posted_at")
        if not self.active or posted_at < self.granted_at:
            return None
        if self.scope is ConsentScope.SHARED and posted_at < self.scope_since:
            return ConsentScope.SERVER
        return self.scope


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the append-only audit: who did what to whose consent, and when."""

    id: int
    at: datetime
    action: AuditAction
    user_id: int
    guild_id: int | None
    """None for actions that span every guild (a deletion after `plipbot forget --user`)."""
    scope: ConsentScope | None
    actor_id: int
    """The user themself, or the operator who acted for them (e.g. through the CLI)."""
    detail: Mapping[str, Any] | None


def _parse_scope(scope: ConsentScope | str) -> ConsentScope:
    """Accept the enum or its text (CLI and button payloads arrive as text)."""
    try:
        return ConsentScope(scope)
    except ValueError:
        allowed = ", ".join(member.value for member in ConsentScope)
        raise ConsentError(f"Unknown consent scope {scope!r}; use one of: {allowed}.") from None


_ADVISORY_NAMESPACE = 0x504C4950  # "PLIP": keeps our advisory locks apart from anyone else's


class _Base(DeclarativeBase):
    pass


class _ConsentRow(_Base):
    __tablename__ = "consents"
    __table_args__ = (
        # At most one active grant per user and guild, even with several workers writing at once.
        sa.Index(
            "uq_consents_active",
            "user_id",
            "guild_id",
            unique=True,
            sqlite_where=sa.text("withdrawn_at IS NULL"),
            postgresql_where=sa.text("withdrawn_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    guild_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    scope: Mapped[ConsentScope] = enum_column(ConsentScope)
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    scope_since: Mapped[datetime] = mapped_column(UtcDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    def to_consent(self) -> Consent:
        return Consent(
            id=self.id,
            user_id=self.user_id,
            guild_id=self.guild_id,
            scope=ConsentScope(self.scope),
            granted_at=self.granted_at,
            scope_since=self.scope_since,
            withdrawn_at=self.withdrawn_at,
        )


class _AuditRow(_Base):
    """Append-only: the ledger only ever inserts these rows."""

    __tablename__ = "consent_audit"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    action: Mapped[AuditAction] = enum_column(AuditAction)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    guild_id: Mapped[int | None] = mapped_column(sa.BigInteger, index=True, nullable=True)
    scope: Mapped[ConsentScope | None] = enum_column(ConsentScope, nullable=True)
    actor_id: Mapped[int] = mapped_column(sa.BigInteger)
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)

    def to_entry(self) -> AuditEntry:
        return AuditEntry(
            id=self.id,
            at=self.at,
            action=AuditAction(self.action),
            user_id=self.user_id,
            guild_id=self.guild_id,
            scope=None if self.scope is None else ConsentScope(self.scope),
            actor_id=self.actor_id,
            detail=None if self.detail is None else dict(self.detail),
        )


class _ErasureRow(_Base):
    """One withdrawal's erasure of a user's data, from request to completion and notification.

    Opened before anything is deleted and closed only when every store has forgotten the user, so a run
    cut short (a store down midway, a worker killed) stays open for the sweep to finish.
    """

    __tablename__ = "erasure_requests"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    guild_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    actor_id: Mapped[int] = mapped_column(sa.BigInteger)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True, index=True)
    items_erased: Mapped[int] = mapped_column(sa.Integer, default=0)

    def to_erasure(self) -> Erasure:
        return Erasure(
            id=self.id,
            user_id=self.user_id,
            guild_id=self.guild_id,
            actor_id=self.actor_id,
            requested_at=self.requested_at,
            attempts=self.attempts,
            completed_at=self.completed_at,
            notified_at=self.notified_at,
            items_erased=self.items_erased,
        )


@dataclass(frozen=True, slots=True)
class Erasure:
    """A withdrawal's erasure: open until every store has forgotten the user, then told to them once."""

    id: int
    user_id: int
    guild_id: int | None
    """None: every server."""
    actor_id: int
    requested_at: datetime
    attempts: int
    completed_at: datetime | None
    notified_at: datetime | None
    items_erased: int


class ConsentLedger(SqlStore):
    """The durable record of consent, shared by the bot, the ingest workers and the CLI.

    Thread-safe: each call runs in its own short transaction from a connection pool.
    """

    metadata = _Base.metadata
    database_name = "consent ledger"
    error = ConsentError
    unreachable_message = UNREACHABLE_MESSAGE
    race_message = "Consent for this user changed at the same moment from elsewhere; please try again."

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsentLedger:
        """The ledger the settings point at: `ledger.url`, else SQLite in the data dir."""
        url = settings.ledger.url or f"sqlite:///{settings.data_dir}/consent.sqlite3"
        return cls(url)

    @staticmethod
    def _lock_user(session: Session, user_id: int) -> None:
        """Serialise every consent change of one user (PostgreSQL; SQLite writers are serial already).

        Row locks alone leave a window: a withdrawal cannot lock a grant that another transaction has
        inserted but not committed, so audit entries could be numbered in an order that is not the
        order the changes took effect. A transaction-scoped advisory lock per user closes it.
        """
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_NAMESPACE, user_id % (2**31))))

    @staticmethod
    def _find_active(session: Session, user_id: int, guild_id: int | None) -> Sequence[_ConsentRow]:
        """Active grants of a user (in one guild, or all), locked until commit on PostgreSQL.

        FOR UPDATE makes a concurrent withdraw or scope change wait, then re-check `withdrawn_at IS NULL`,
        so the same grant is never withdrawn (and audited) twice.
        """
        statement = (
            sa.select(_ConsentRow)
            .where(_ConsentRow.user_id == user_id, _ConsentRow.withdrawn_at.is_(None))
            .order_by(_ConsentRow.id)
            .with_for_update()
        )
        if guild_id is not None:
            statement = statement.where(_ConsentRow.guild_id == guild_id)
        return session.scalars(statement).all()

    def grant(
        self,
        user_id: int,
        guild_id: int,
        scope: ConsentScope | str,
        *,
        actor_id: int | None = None,
        at: datetime | None = None,
    ) -> Consent:
        """Record that `user_id` consents, in `guild_id`, to `scope`; returns the active grant.

        Granting while a grant is active changes its scope (audited as a scope change); granting the same
        scope again changes nothing and is not audited. `actor_id` defaults to the user.
        """
        scope = _parse_scope(scope)
        when = datetime.now(UTC) if at is None else as_utc(at, "at")
        actor = user_id if actor_id is None else actor_id
        # A concurrent grant can win the partial unique index between our read and our insert; the
        # base's `_write` then reads again, and this becomes a no-op or a scope change.
        return self._write(lambda session: self._grant_once(session, user_id, guild_id, scope, actor, when))

    def _grant_once(
        self,
        session: Session,
        user_id: int,
        guild_id: int,
        scope: ConsentScope,
        actor_id: int,
        when: datetime,
    ) -> Consent:
        self._lock_user(session, user_id)
        active = self._find_active(session, user_id, guild_id)
        row = active[0] if active else None
        if row is None:
            row = _ConsentRow(
                user_id=user_id,
                guild_id=guild_id,
                scope=scope,
                granted_at=when,
                scope_since=when,
                withdrawn_at=None,
            )
            session.add(row)
            session.add(
                _AuditRow(
                    at=when,
                    action=AuditAction.GRANT,
                    user_id=user_id,
                    guild_id=guild_id,
                    scope=scope,
                    actor_id=actor_id,
                )
            )
        elif row.scope != scope:
            previous = ConsentScope(row.scope)
            changed_at = max(when, row.granted_at)
            row.scope = scope
            row.scope_since = changed_at
            session.add(
                _AuditRow(
                    at=changed_at,
                    action=AuditAction.SCOPE_CHANGE,
                    user_id=user_id,
                    guild_id=guild_id,
                    scope=scope,
                    actor_id=actor_id,
                    detail={"previous_scope": previous.value},
                )
            )
        session.flush()
        return row.to_consent()

    def withdraw(
        self,
        user_id: int,
        guild_id: int | None = None,
        *,
        actor_id: int | None = None,
        at: datetime | None = None,
    ) -> list[Consent]:
        """Withdraw the user's active grant in `guild_id`, or in every guild when it is None.

        Returns the grants withdrawn (empty when none was active; nothing is audited then). A withdrawal
        time earlier than the grant (clock skew between workers) is clamped to the grant time.
        """
        when = datetime.now(UTC) if at is None else as_utc(at, "at")
        actor = user_id if actor_id is None else actor_id
        with self._transaction(write=True) as session:
            self._lock_user(session, user_id)
            withdrawn: list[Consent] = []
            for row in self._find_active(session, user_id, guild_id):
                row.withdrawn_at = max(when, row.granted_at)
                session.add(
                    _AuditRow(
                        at=row.withdrawn_at,
                        action=AuditAction.WITHDRAW,
                        user_id=user_id,
                        guild_id=row.guild_id,
                        scope=row.scope,
                        actor_id=actor,
                        detail={"all_guilds": True} if guild_id is None else None,
                    )
                )
                withdrawn.append(row.to_consent())
            return withdrawn

    def current(self, user_id: int, guild_id: int) -> Consent | None:
        """The user's active grant in the guild, if any."""
        with self._transaction(write=False) as session:
            row = session.scalars(
                sa.select(_ConsentRow).where(
                    _ConsentRow.user_id == user_id,
                    _ConsentRow.guild_id == guild_id,
                    _ConsentRow.withdrawn_at.is_(None),
                )
            ).one_or_none()
            return None if row is None else row.to_consent()

    def allows(self, user_id: int, guild_id: int, posted_at: datetime) -> ConsentScope | None:
        """The scope a post made at `posted_at` may enter with, or None if it may not enter at all.

        Call it when the point is upserted, not when the job was queued: a withdrawal in between must
        win. Both scopes are truthy, so `if ledger.allows(...)` reads as a yes/no.
        """
        posted_at = as_utc(posted_at, "posted_at")
        consent = self.current(user_id, guild_id)
        return None if consent is None else consent.scope_for(posted_at)

    def history(self, user_id: int, guild_id: int | None = None) -> list[Consent]:
        """Every grant of the user (in one guild or all), oldest first, withdrawn ones included."""
        with self._transaction(write=False) as session:
            statement = sa.select(_ConsentRow).where(_ConsentRow.user_id == user_id).order_by(_ConsentRow.id)
            if guild_id is not None:
                statement = statement.where(_ConsentRow.guild_id == guild_id)
            return [row.to_consent() for row in session.scalars(statement)]

    def active_grants(self, guild_id: int) -> list[Consent]:
        """Every active grant in the guild, oldest first: what a re-scope of the server reads."""
        with self._transaction(write=False) as session:
            statement = (
                sa.select(_ConsentRow)
                .where(_ConsentRow.guild_id == guild_id, _ConsentRow.withdrawn_at.is_(None))
                .order_by(_ConsentRow.id)
            )
            return [row.to_consent() for row in session.scalars(statement)]

    # --- erasures (see ingest.withdrawal) -----------------------------------------------------------

    def open_erasure(self, user_id: int, guild_id: int | None, *, actor_id: int | None = None) -> Erasure:
        """Record that the user's data (in `guild_id`, or everywhere) must be erased; returns the open
        request, reusing one already open for the same user and server."""
        with self._transaction(write=True) as session:
            self._lock_user(session, user_id)
            statement = sa.select(_ErasureRow).where(
                _ErasureRow.user_id == user_id,
                _ErasureRow.completed_at.is_(None),
                _ErasureRow.guild_id.is_(None) if guild_id is None else _ErasureRow.guild_id == guild_id,
            )
            row = session.scalars(statement.order_by(_ErasureRow.id)).first()
            if row is None:
                row = _ErasureRow(
                    user_id=user_id,
                    guild_id=guild_id,
                    actor_id=user_id if actor_id is None else actor_id,
                    requested_at=datetime.now(UTC),
                    attempts=0,
                    items_erased=0,
                )
                session.add(row)
            row.attempts += 1
            session.flush()
            return row.to_erasure()

    def complete_erasure(self, erasure_id: int, items_erased: int, *, notified: bool) -> bool:
        """Close an erasure; True only for the call that closed it (a sweep racing the original run
        closes it once). `notified`: the requester was already told (e.g. in the command's reply)."""
        now = datetime.now(UTC)
        with self._transaction(write=True) as session:
            row = session.get(_ErasureRow, erasure_id, with_for_update=True)
            if row is None or row.completed_at is not None:
                return False
            row.completed_at = now
            row.items_erased += items_erased
            row.notified_at = now if notified else None
            return True

    def note_erasure_attempt(self, erasure_id: int, items_erased: int) -> None:
        """Count what a run that did not finish erased anyway (and that it tried)."""
        with self._transaction(write=True) as session:
            row = session.get(_ErasureRow, erasure_id, with_for_update=True)
            if row is not None and row.completed_at is None:
                row.items_erased += items_erased
                row.attempts += 1

    def pending_erasures(self) -> list[Erasure]:
        """Erasures not finished yet, oldest first: what the withdrawal sweep retries."""
        with self._transaction(write=False) as session:
            statement = sa.select(_ErasureRow).where(_ErasureRow.completed_at.is_(None))
            statement = statement.order_by(_ErasureRow.id)
            return [row.to_erasure() for row in session.scalars(statement)]

    def unnotified_erasures(self) -> list[Erasure]:
        """Finished erasures whose user has not been told yet (the bot DMs them, then `mark_notified`)."""
        with self._transaction(write=False) as session:
            statement = (
                sa.select(_ErasureRow)
                .where(_ErasureRow.completed_at.is_not(None), _ErasureRow.notified_at.is_(None))
                .order_by(_ErasureRow.id)
            )
            return [row.to_erasure() for row in session.scalars(statement)]

    def mark_notified(self, erasure_id: int) -> None:
        """The user was told their erasure finished."""
        with self._transaction(write=True) as session:
            row = session.get(_ErasureRow, erasure_id, with_for_update=True)
            if row is not None and row.notified_at is None:
                row.notified_at = datetime.now(UTC)

    def record_deletion(
        self,
        user_id: int,
        guild_id: int | None,
        points_deleted: int,
        *,
        actor_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Audit that the user's points were deleted from the corpus (`guild_id` None: from every guild).

        `detail` must be JSON-serialisable; `points_deleted` is stored in it.
        """
        if points_deleted < 0:
            raise ValueError(f"points_deleted must be >= 0, got {points_deleted}")
        when = datetime.now(UTC) if at is None else as_utc(at, "at")
        with self._transaction(write=True) as session:
            row = _AuditRow(
                at=when,
                action=AuditAction.DELETE,
                user_id=user_id,
                guild_id=guild_id,
                scope=None,
                actor_id=user_id if actor_id is None else actor_id,
                detail={**(detail or {}), "points_deleted": points_deleted},
            )
            session.add(row)
            session.flush()
            return row.to_entry()

    def record_import(
        self,
        actor_id: int,
        guild_id: int | None,
        scope: ConsentScope | str,
        *,
        source: str,
        points_added: int,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Audit a bulk import: the operator (`actor_id`) vouches for the rights to `source`.

        Imported cases have no Discord author whose consent could be asked; the operator's run of
        `plipbot ingest` is the recorded consent, and this entry is its durable trace.
        """
        when = datetime.now(UTC) if at is None else as_utc(at, "at")
        with self._transaction(write=True) as session:
            row = _AuditRow(
                at=when,
                action=AuditAction.IMPORT,
                user_id=actor_id,
                guild_id=guild_id,
                scope=_parse_scope(scope),
                actor_id=actor_id,
                detail={**(detail or {}), "source": source, "points_added": points_added},
            )
            session.add(row)
            session.flush()
            return row.to_entry()

    def audit(self, user_id: int | None = None, guild_id: int | None = None) -> list[AuditEntry]:
        """Audit entries in the order they were recorded, optionally for one user and/or one guild.

        Filtering by guild leaves out guild-wide entries (guild_id None); filter by user to see those.
        """
        with self._transaction(write=False) as session:
            statement = sa.select(_AuditRow).order_by(_AuditRow.id)
            if user_id is not None:
                statement = statement.where(_AuditRow.user_id == user_id)
            if guild_id is not None:
                statement = statement.where(_AuditRow.guild_id == guild_id)
            return [row.to_entry() for row in session.scalars(statement)]
