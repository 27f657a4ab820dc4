"""Per-server and per-channel bot configuration: label sets, on/off switches, sharing, moderator role.

Moderators change these with slash commands while several bot processes (shards, workers, the CLI) read
them, so the configuration lives in a database (SQLite by default, PostgreSQL by URL), not in memory or a
file. Every change is audited with its actor and time, because "who switched ingest on in #cases?" must
have an answer.

Defaults, chosen so that an unconfigured server is useful and private:

* The bot answers in every channel (`bot_enabled`), until a moderator disables it for the server or a
  channel. A server-wide enable/disable resets the per-channel exceptions, so it is a real kill switch;
  per-channel commands then make exceptions to it.
* No channel grows the corpus (`ingest_enabled`) until a moderator enables ingest in that channel; a
  channel where the bot is disabled never ingests either (disabled means the bot stays out entirely).
* Nothing is shared beyond the server (`sharing` False) and answers are plain replies (`threads` False).
* Labels come from the channel's override, else the server's set, else `model.presets.DEFAULT_PRESET`.

Label sets are validated by `model.zeroshot.LabelSet`, so the limits are those of the CLI and the model,
and stored as JSON snapshots: a preset is copied when chosen, so a code change never silently changes a
server's labels.

Callers get frozen dataclasses, never ORM objects. The database plumbing here (`SqlStore`) is shared with
`bot.feedback`; it reuses the consent ledger's time-zone type and SQLite locking, so every table in the
same database follows the same rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from model.presets import DEFAULT_PRESET, get_preset
from model.zeroshot import Label, LabelSet
from plipbot.errors import BotStoreError, LabelSetError, ServiceUnavailableError
from plipbot.sqldb import (
    WRITE_TRANSACTION,
    RowId,
    UtcDateTime,
    create_engine,
)

if TYPE_CHECKING:
    from plipbot.settings import Settings

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_BOT_ENABLED = True
DEFAULT_INGEST_ENABLED = False
DEFAULT_SHARING = False
DEFAULT_THREADS = False

_SERVER_WIDE = 0
"""`channel_id` of a server-wide label set: snowflakes are never 0, and a NULL in a primary key would
make every server-wide row distinct."""

_LABEL_SET_FORMAT = 1
"""Version of the stored label-set JSON, so a later format can still read today's rows."""


# --- Database plumbing shared by the bot's stores -----------------------------------------------------


def bot_database_url(settings: Settings) -> str:
    """Where the bot keeps its configuration and feedback.

    With `ledger.url` set (PostgreSQL in production), the same database: one service to run and back up,
    and the `bot_` tables never collide with the ledger's. Without it, a SQLite file of its own next to
    the ledger's: the consent file stays the legal record (kept and backed up on its own terms) and the
    bot's frequent small writes (first-post notices, feedback clicks) never queue for its write lock.
    """
    return settings.ledger.url or f"sqlite:///{settings.data_dir}/bot.sqlite3"


def _create_engine(url: str) -> Engine:
    """The engine for `url` (SQLite or PostgreSQL only); configuration mistakes become BotStoreError."""
    return create_engine(
        url, what="bot database", error=BotStoreError, backends=frozenset({"sqlite", "postgresql"})
    )


class SqlStore:
    """Base of the bot's stores: engine, tables, one short transaction per call, retry on a lost race.

    Thread-safe: each call runs in its own transaction from a connection pool.
    """

    _metadata: sa.MetaData
    _unreachable_message = "The bot's database is unreachable; try again later."

    def __init__(self, url: str) -> None:
        """Connect to `url` and create missing tables.

        Raises BotStoreError for an unusable URL and ServiceUnavailableError if the database is down.
        """
        self._engine = _create_engine(url)
        try:
            self._metadata.create_all(self._engine)
        except (exc.OperationalError, exc.InterfaceError) as err:
            self._engine.dispose()
            log.warning("bot database unreachable while creating tables: %s", err.orig)
            raise ServiceUnavailableError(self._unreachable_message) from err

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The store in the database `bot_database_url(settings)` names."""
        return cls(bot_database_url(settings))

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
            log.warning("bot database unreachable: %s", err.orig)
            raise ServiceUnavailableError(self._unreachable_message) from err

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
            log.info("concurrent write to the bot database; retrying once")
        try:
            with self._transaction(write=True) as session:
                return change(session)
        except exc.IntegrityError as err:
            raise BotStoreError("This changed at the same moment from elsewhere; please try again.") from err


def _now() -> datetime:
    return datetime.now(UTC)


def _snowflake(name: str, value: int) -> int:
    """Reject what is not a Discord id (None from a DM, a bool, 0), before it reaches a key."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer snowflake, got {value!r}")
    return value


# --- Configuration ------------------------------------------------------------------------------------


class LabelSource(StrEnum):
    """Where a channel's effective label set comes from (compares equal to its text)."""

    CHANNEL = "channel"
    SERVER = "server"
    DEFAULT_PRESET = "default preset"


class ConfigAction(StrEnum):
    """What an audited configuration change did."""

    SET_LABELS = "set_labels"
    ADD_LABELS = "add_labels"
    REMOVE_LABELS = "remove_labels"
    USE_PRESET = "use_preset"
    SET_TEMPLATES = "set_templates"
    CLEAR_LABELS = "clear_labels"
    BOT_ENABLED = "bot_enabled"
    INGEST_ENABLED = "ingest_enabled"
    SHARING = "sharing"
    THREADS = "threads"
    MODERATOR_ROLE = "moderator_role"


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A server's switches (defaults where nothing was set)."""

    guild_id: int
    bot_enabled: bool
    """The server-wide default; a channel may make an exception."""
    sharing: bool
    threads: bool
    moderator_role_id: int | None


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """Everything a message handler needs about one channel, read in one transaction."""

    guild_id: int
    channel_id: int
    bot_enabled: bool
    ingest_enabled: bool
    sharing: bool
    threads: bool
    moderator_role_id: int | None
    label_set: LabelSet
    label_source: LabelSource


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One audited change: who changed what, where, and when."""

    id: int
    at: datetime
    guild_id: int
    channel_id: int | None
    """None for server-wide changes."""
    actor_id: int
    action: ConfigAction
    detail: Mapping[str, Any] | None


class _Base(DeclarativeBase):
    pass


class _GuildRow(_Base):
    __tablename__ = "bot_guild_settings"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    bot_enabled: Mapped[bool] = mapped_column(sa.Boolean)
    sharing: Mapped[bool] = mapped_column(sa.Boolean)
    threads: Mapped[bool] = mapped_column(sa.Boolean)
    moderator_role_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    def to_settings(self) -> GuildSettings:
        return GuildSettings(
            guild_id=self.guild_id,
            bot_enabled=self.bot_enabled,
            sharing=self.sharing,
            threads=self.threads,
            moderator_role_id=self.moderator_role_id,
        )


class _ChannelRow(_Base):
    __tablename__ = "bot_channel_settings"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    bot_enabled: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    """None: follow the server."""
    ingest_enabled: Mapped[bool] = mapped_column(sa.Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class _LabelSetRow(_Base):
    __tablename__ = "bot_label_sets"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    """`_SERVER_WIDE` (0) for the server's set."""
    label_set: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[int] = mapped_column(sa.BigInteger)


class _NoticeRow(_Base):
    """Who has been shown the first-post explanation in which server (the key is the whole point)."""

    __tablename__ = "bot_first_notices"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False, index=True)
    noticed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class _AuditRow(_Base):
    """Append-only: the store only ever inserts these rows."""

    __tablename__ = "bot_config_audit"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    guild_id: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    channel_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    actor_id: Mapped[int] = mapped_column(sa.BigInteger)
    action: Mapped[str] = mapped_column(sa.String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)

    def to_change(self) -> ConfigChange:
        return ConfigChange(
            id=self.id,
            at=self.at,
            guild_id=self.guild_id,
            channel_id=self.channel_id,
            actor_id=self.actor_id,
            action=ConfigAction(self.action),
            detail=None if self.detail is None else dict(self.detail),
        )


def _label_set_to_json(label_set: LabelSet) -> dict[str, Any]:
    return {
        "format": _LABEL_SET_FORMAT,
        "name": label_set.name,
        "description": label_set.description,
        "labels": [{"text": label.text, "templates": list(label.templates)} for label in label_set.labels],
    }


def _label_set_from_json(data: Mapping[str, Any]) -> LabelSet:
    """Rebuild (and so re-validate) a stored set; raises LabelSetError if it no longer passes."""
    labels = tuple(Label(str(item["text"]), tuple(item.get("templates", ()))) for item in data["labels"])
    return LabelSet(name=str(data["name"]), labels=labels, description=str(data.get("description", "")))


def _shared_templates(label_set: LabelSet) -> tuple[str, ...]:
    """The templates every label uses, so labels added later are prompted alike; () if they differ."""
    first = label_set.labels[0].templates
    return first if all(label.templates == first for label in label_set.labels) else ()


def _casefolded(texts: Sequence[str]) -> dict[str, str]:
    return {text.strip().casefold(): text.strip() for text in texts}


class GuildConfigStore(SqlStore):
    """Durable per-server and per-channel configuration of the bot."""

    _metadata = _Base.metadata
    _unreachable_message = "The bot's settings database is unreachable; try again later."

    # --- label sets -----------------------------------------------------------------------------------

    def effective_label_set(self, guild_id: int, channel_id: int) -> tuple[LabelSet, LabelSource]:
        """The label set a channel uses and where it comes from: channel, server, or the default preset."""
        _snowflake("guild_id", guild_id)
        _snowflake("channel_id", channel_id)
        with self._transaction(write=False) as session:
            rows = self._label_rows(session, guild_id, channel_id, lock=False)
            return self._resolve(rows, guild_id, channel_id)

    def set_labels(
        self,
        guild_id: int,
        labels: Sequence[str],
        *,
        channel_id: int | None = None,
        templates: Sequence[str] | None = None,
        actor_id: int,
    ) -> LabelSet:
        """Replace the server's (or a channel's) labels; returns the stored set.

        `templates=None` keeps the prompts in use there now (when all its labels share them), so
        replacing labels does not silently change how they are prompted; `templates=[]` clears them to
        the model's default template.
        """

        def build(current: LabelSet) -> LabelSet:
            chosen = _shared_templates(current) if templates is None else tuple(templates)
            return LabelSet.from_texts(labels, chosen, name="custom")

        detail = {"labels": [text.strip() for text in labels]}
        if templates is not None:
            detail["templates"] = list(templates)
        return self._change_labels(guild_id, channel_id, actor_id, ConfigAction.SET_LABELS, build, detail)

    def add_labels(
        self, guild_id: int, labels: Sequence[str], *, channel_id: int | None = None, actor_id: int
    ) -> LabelSet:
        """Append labels to the set in use at that scope (a channel without an override starts from the
        server's set, a server without one from the default preset); new labels get the set's prompts."""

        def build(current: LabelSet) -> LabelSet:
            templates = _shared_templates(current)
            added = tuple(Label(text.strip(), templates) for text in labels)
            return LabelSet(name="custom", labels=current.labels + added)

        detail = {"labels": [text.strip() for text in labels]}
        return self._change_labels(guild_id, channel_id, actor_id, ConfigAction.ADD_LABELS, build, detail)

    def remove_labels(
        self, guild_id: int, labels: Sequence[str], *, channel_id: int | None = None, actor_id: int
    ) -> LabelSet:
        """Remove labels (case-insensitively) from the set in use at that scope.

        Labels that are not in the set raise a LabelSetError naming them, and nothing changes; removing
        every label raises the empty-set error.
        """

        def build(current: LabelSet) -> LabelSet:
            wanted = _casefolded(labels)
            present = {label.text.casefold() for label in current.labels}
            unknown = [text for key, text in wanted.items() if key not in present]
            if unknown:
                names = ", ".join(f"'{text}'" for text in unknown)
                raise LabelSetError(f"Not in the label set: {names}.")
            kept = tuple(label for label in current.labels if label.text.casefold() not in wanted)
            return LabelSet(name="custom", labels=kept)

        detail = {"labels": [text.strip() for text in labels]}
        return self._change_labels(guild_id, channel_id, actor_id, ConfigAction.REMOVE_LABELS, build, detail)

    def use_preset(
        self, guild_id: int, name: str, *, channel_id: int | None = None, actor_id: int
    ) -> LabelSet:
        """Use a built-in preset (copied, labels and prompts) at that scope; unknown names raise
        LabelSetError listing the presets."""
        preset = get_preset(name)
        return self._change_labels(
            guild_id, channel_id, actor_id, ConfigAction.USE_PRESET, lambda _current: preset, {"preset": name}
        )

    def set_templates(
        self, guild_id: int, templates: Sequence[str], *, channel_id: int | None = None, actor_id: int
    ) -> LabelSet:
        """Prompt every label of the set in use at that scope with `templates` (each with one `{}`);
        an empty list means the model's default template."""
        return self._change_labels(
            guild_id,
            channel_id,
            actor_id,
            ConfigAction.SET_TEMPLATES,
            lambda current: current.with_templates(templates),
            {"templates": list(templates)},
        )

    def clear_channel_override(self, guild_id: int, channel_id: int, *, actor_id: int) -> bool:
        """Make the channel follow the server's label set again; False if it had no override."""
        return self._clear_labels(guild_id, _snowflake("channel_id", channel_id), actor_id)

    def clear_server_labels(self, guild_id: int, *, actor_id: int) -> bool:
        """Return the server to the default preset (channel overrides stay); False if it had no set."""
        return self._clear_labels(guild_id, None, actor_id)

    def _label_rows(
        self, session: Session, guild_id: int, channel_id: int | None, *, lock: bool
    ) -> dict[int, _LabelSetRow]:
        """The server's row and the channel's, keyed by channel id (`_SERVER_WIDE` for the server's)."""
        scopes = [_SERVER_WIDE] if channel_id is None else [_SERVER_WIDE, channel_id]
        statement = sa.select(_LabelSetRow).where(
            _LabelSetRow.guild_id == guild_id, _LabelSetRow.channel_id.in_(scopes)
        )
        if lock:
            statement = statement.with_for_update()
        return {row.channel_id: row for row in session.scalars(statement)}

    @staticmethod
    def _resolve(
        rows: Mapping[int, _LabelSetRow], guild_id: int, channel_id: int | None
    ) -> tuple[LabelSet, LabelSource]:
        """The most specific stored set that still validates, else the default preset.

        A stored set that no longer passes validation (limits tightened in a later release) is skipped
        with a warning rather than breaking every answer in the channel.
        """
        candidates = [(channel_id, LabelSource.CHANNEL), (_SERVER_WIDE, LabelSource.SERVER)]
        for scope, source in candidates:
            row = rows.get(scope) if scope is not None else None
            if row is None:
                continue
            try:
                return _label_set_from_json(row.label_set), source
            except (LabelSetError, KeyError, TypeError) as err:
                log.warning("stored %s label set of guild %s is invalid, skipped: %s", source, guild_id, err)
        return get_preset(DEFAULT_PRESET), LabelSource.DEFAULT_PRESET

    def _change_labels(
        self,
        guild_id: int,
        channel_id: int | None,
        actor_id: int,
        action: ConfigAction,
        build: Callable[[LabelSet], LabelSet],
        detail: dict[str, Any],
    ) -> LabelSet:
        """Read the set in use at the scope, build the new one (validation errors abort), store, audit."""
        _snowflake("guild_id", guild_id)
        if channel_id is not None:
            _snowflake("channel_id", channel_id)
        scope = _SERVER_WIDE if channel_id is None else channel_id

        def change(session: Session) -> LabelSet:
            rows = self._label_rows(session, guild_id, channel_id, lock=True)
            current, _source = self._resolve(rows, guild_id, channel_id)
            label_set = build(current)
            now = _now()
            row = rows.get(scope)
            if row is None:
                row = _LabelSetRow(guild_id=guild_id, channel_id=scope)
                session.add(row)
            row.label_set = _label_set_to_json(label_set)
            row.updated_at = now
            row.updated_by = actor_id
            self._audit(session, now, guild_id, channel_id, actor_id, action, detail)
            return label_set

        return self._write(change)

    def _clear_labels(self, guild_id: int, channel_id: int | None, actor_id: int) -> bool:
        _snowflake("guild_id", guild_id)
        scope = _SERVER_WIDE if channel_id is None else channel_id

        def change(session: Session) -> bool:
            deleted = session.scalars(
                sa.delete(_LabelSetRow)
                .where(_LabelSetRow.guild_id == guild_id, _LabelSetRow.channel_id == scope)
                .returning(_LabelSetRow.channel_id)
            ).all()
            if not deleted:
                return False
            self._audit(session, _now(), guild_id, channel_id, actor_id, ConfigAction.CLEAR_LABELS, None)
            return True

        return self._write(change)

    # --- switches -------------------------------------------------------------------------------------

    def guild_settings(self, guild_id: int) -> GuildSettings:
        """The server's switches, defaults where nothing was set."""
        _snowflake("guild_id", guild_id)
        with self._transaction(write=False) as session:
            row = session.get(_GuildRow, guild_id)
            return self._default_guild(guild_id).to_settings() if row is None else row.to_settings()

    def channel_config(self, guild_id: int, channel_id: int) -> ChannelConfig:
        """Everything about one channel in one read (the on-message path calls this once per post)."""
        _snowflake("guild_id", guild_id)
        _snowflake("channel_id", channel_id)
        with self._transaction(write=False) as session:
            guild = session.get(_GuildRow, guild_id) or self._default_guild(guild_id)
            channel = session.get(_ChannelRow, (guild_id, channel_id))
            label_set, source = self._resolve(
                self._label_rows(session, guild_id, channel_id, lock=False), guild_id, channel_id
            )
        bot_enabled = (
            guild.bot_enabled if channel is None or channel.bot_enabled is None else channel.bot_enabled
        )
        ingest_enabled = DEFAULT_INGEST_ENABLED if channel is None else channel.ingest_enabled
        return ChannelConfig(
            guild_id=guild_id,
            channel_id=channel_id,
            bot_enabled=bot_enabled,
            ingest_enabled=bot_enabled and ingest_enabled,
            sharing=guild.sharing,
            threads=guild.threads,
            moderator_role_id=guild.moderator_role_id,
            label_set=label_set,
            label_source=source,
        )

    def bot_enabled(self, guild_id: int, channel_id: int) -> bool:
        """Whether the bot answers in the channel: the channel's exception, else the server's setting
        (enabled unless a moderator disabled it)."""
        return self.channel_config(guild_id, channel_id).bot_enabled

    def ingest_enabled(self, guild_id: int, channel_id: int) -> bool:
        """Whether posts in the channel may grow the corpus (consent is still checked per author):
        only after a moderator enabled it there, and never while the bot is disabled there."""
        return self.channel_config(guild_id, channel_id).ingest_enabled

    def sharing(self, guild_id: int) -> bool:
        """Whether the server lets consented cases into the shared corpus (default: no)."""
        return self.guild_settings(guild_id).sharing

    def threads(self, guild_id: int) -> bool:
        """Whether answers go into a thread instead of a reply (default: reply)."""
        return self.guild_settings(guild_id).threads

    def moderator_role(self, guild_id: int) -> int | None:
        """The role that may configure the bot besides Manage Server (default: none)."""
        return self.guild_settings(guild_id).moderator_role_id

    def set_bot_enabled(
        self, guild_id: int, enabled: bool, *, channel_id: int | None = None, actor_id: int
    ) -> bool:
        """`/bot enable|disable`: for one channel, or (channel_id None) for the whole server.

        The server-wide form also drops every channel's exception, so "disable" really means everywhere;
        channels can be re-enabled one by one afterwards. Returns whether anything changed.
        """
        _snowflake("guild_id", guild_id)
        if channel_id is None:
            return self._write(lambda session: self._set_server_enabled(session, guild_id, enabled, actor_id))
        _snowflake("channel_id", channel_id)

        def change(session: Session) -> bool:
            row = self._ensure_channel(session, guild_id, channel_id)
            previous = row.bot_enabled
            if previous == enabled:
                return False
            row.bot_enabled = enabled
            row.updated_at = now = _now()
            detail = {"value": enabled, "previous": previous}
            self._audit(session, now, guild_id, channel_id, actor_id, ConfigAction.BOT_ENABLED, detail)
            return True

        return self._write(change)

    def _set_server_enabled(self, session: Session, guild_id: int, enabled: bool, actor_id: int) -> bool:
        row = self._ensure_guild(session, guild_id)
        previous = row.bot_enabled
        cleared = session.scalars(
            sa.update(_ChannelRow)
            .where(_ChannelRow.guild_id == guild_id, _ChannelRow.bot_enabled.is_not(None))
            .values(bot_enabled=None)
            .returning(_ChannelRow.channel_id)
        ).all()
        if previous == enabled and not cleared:
            return False
        row.bot_enabled = enabled
        row.updated_at = now = _now()
        detail = {"value": enabled, "previous": previous, "channel_exceptions_cleared": len(cleared)}
        self._audit(session, now, guild_id, None, actor_id, ConfigAction.BOT_ENABLED, detail)
        return True

    def set_ingest_enabled(self, guild_id: int, channel_id: int, enabled: bool, *, actor_id: int) -> bool:
        """Let posts in one channel grow the corpus, or stop it; returns whether anything changed."""
        _snowflake("guild_id", guild_id)
        _snowflake("channel_id", channel_id)

        def change(session: Session) -> bool:
            row = self._ensure_channel(session, guild_id, channel_id)
            if row.ingest_enabled == enabled:
                return False
            row.ingest_enabled = enabled
            row.updated_at = now = _now()
            self._audit(
                session, now, guild_id, channel_id, actor_id, ConfigAction.INGEST_ENABLED, {"value": enabled}
            )
            return True

        return self._write(change)

    def set_sharing(self, guild_id: int, enabled: bool, *, actor_id: int) -> bool:
        """Let the server's consented cases into the shared corpus (each author's scope still applies)."""
        return self._set_guild_field(guild_id, "sharing", enabled, actor_id, ConfigAction.SHARING)

    def set_threads(self, guild_id: int, enabled: bool, *, actor_id: int) -> bool:
        """Answer in a thread (keeps busy channels readable) or as a plain reply."""
        return self._set_guild_field(guild_id, "threads", enabled, actor_id, ConfigAction.THREADS)

    def set_moderator_role(self, guild_id: int, role_id: int | None, *, actor_id: int) -> bool:
        """The role that may configure the bot besides Manage Server; None removes it."""
        if role_id is not None:
            _snowflake("role_id", role_id)
        return self._set_guild_field(
            guild_id, "moderator_role_id", role_id, actor_id, ConfigAction.MODERATOR_ROLE
        )

    def _set_guild_field(
        self, guild_id: int, field: str, value: bool | int | None, actor_id: int, action: ConfigAction
    ) -> bool:
        _snowflake("guild_id", guild_id)

        def change(session: Session) -> bool:
            row = self._ensure_guild(session, guild_id)
            previous = getattr(row, field)
            if previous == value:
                return False
            setattr(row, field, value)
            row.updated_at = now = _now()
            detail = {"value": value, "previous": previous}
            self._audit(session, now, guild_id, None, actor_id, action, detail)
            return True

        return self._write(change)

    @staticmethod
    def _default_guild(guild_id: int) -> _GuildRow:
        return _GuildRow(
            guild_id=guild_id,
            bot_enabled=DEFAULT_BOT_ENABLED,
            sharing=DEFAULT_SHARING,
            threads=DEFAULT_THREADS,
            moderator_role_id=None,
            updated_at=_now(),
        )

    def _ensure_guild(self, session: Session, guild_id: int) -> _GuildRow:
        """The server's row, locked until commit; created with the defaults if missing."""
        row = session.scalars(
            sa.select(_GuildRow).where(_GuildRow.guild_id == guild_id).with_for_update()
        ).one_or_none()
        if row is None:
            row = self._default_guild(guild_id)
            session.add(row)
        return row

    @staticmethod
    def _ensure_channel(session: Session, guild_id: int, channel_id: int) -> _ChannelRow:
        """The channel's row, locked until commit; created with the defaults if missing."""
        row = session.scalars(
            sa.select(_ChannelRow)
            .where(_ChannelRow.guild_id == guild_id, _ChannelRow.channel_id == channel_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            row = _ChannelRow(
                guild_id=guild_id,
                channel_id=channel_id,
                bot_enabled=None,
                ingest_enabled=DEFAULT_INGEST_ENABLED,
                updated_at=_now(),
            )
            session.add(row)
        return row

    # --- first-post notice ----------------------------------------------------------------------------

    def first_time_notice(self, guild_id: int, user_id: int) -> bool:
        """True exactly once per (server, user): the caller then sends its one ephemeral explanation.

        An insert that ignores an existing key decides it inside the database, so two workers seeing the
        same first post cannot both say yes.
        """
        _snowflake("guild_id", guild_id)
        _snowflake("user_id", user_id)
        values = {"guild_id": guild_id, "user_id": user_id, "noticed_at": _now()}
        insert = postgresql_insert if self._dialect == "postgresql" else sqlite_insert
        statement = insert(_NoticeRow).values(values).on_conflict_do_nothing().returning(_NoticeRow.user_id)
        with self._transaction(write=True) as session:
            return session.execute(statement).first() is not None

    def forget_user(self, user_id: int) -> int:
        """Delete what the configuration holds about a user (their first-post notices); returns the count.

        Audit rows keep moderators' ids: they record who changed a server's settings, not the user.
        """
        _snowflake("user_id", user_id)
        with self._transaction(write=True) as session:
            return len(
                session.scalars(
                    sa.delete(_NoticeRow).where(_NoticeRow.user_id == user_id).returning(_NoticeRow.guild_id)
                ).all()
            )

    # --- audit ----------------------------------------------------------------------------------------

    def audit(self, guild_id: int, *, limit: int | None = None) -> list[ConfigChange]:
        """The server's configuration changes, oldest first (the latest `limit` when given)."""
        _snowflake("guild_id", guild_id)
        with self._transaction(write=False) as session:
            statement = (
                sa.select(_AuditRow).where(_AuditRow.guild_id == guild_id).order_by(_AuditRow.id.desc())
            )
            if limit is not None:
                statement = statement.limit(limit)
            return [row.to_change() for row in reversed(session.scalars(statement).all())]

    @staticmethod
    def _audit(
        session: Session,
        at: datetime,
        guild_id: int,
        channel_id: int | None,
        actor_id: int,
        action: ConfigAction,
        detail: Mapping[str, Any] | None,
    ) -> None:
        session.add(
            _AuditRow(
                at=at,
                guild_id=guild_id,
                channel_id=channel_id,
                actor_id=actor_id,
                action=action.value,
                detail=None if detail is None else dict(detail),
            )
        )
