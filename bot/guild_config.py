"""Per-server and per-channel bot configuration: label sets, on/off switches, sharing, moderator role.

Moderators change these with slash commands while several bot processes (shards, workers, the CLI) read
them, so the configuration lives in a database (SQLite by default, PostgreSQL by URL), not in memory or a
file. Every change is audited with its actor and time, because "who switched ingest on in #cases?" must
have an answer.

Rules (defaults are in `bot.guild_values`, tables in `bot.guild_tables`):

* A server-wide enable/disable resets the per-channel exceptions, so it is a real kill switch;
  per-channel commands then make exceptions to it.
* A channel where the bot is disabled never ingests either (disabled means the bot stays out entirely).
* Labels come from the channel's override, else the server's set, else `model.presets.DEFAULT_PRESET`.
  Label sets are validated by `model.zeroshot.LabelSet`, so the limits are those of the CLI and the model.

Callers get frozen dataclasses, never ORM objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.guild_tables import (
    SERVER_WIDE,
    ChannelRow,
    ConfigAuditRow,
    GuildRow,
    GuildTables,
    LabelSetRow,
    NoticeRow,
    label_set_from_json,
    label_set_to_json,
)
from bot.guild_values import (
    DEFAULT_BOT_ENABLED,
    DEFAULT_INGEST_ENABLED,
    DEFAULT_SHARING,
    DEFAULT_THREADS,
    ChannelConfig,
    ConfigAction,
    ConfigChange,
    GuildSettings,
    LabelSource,
)
from model.presets import DEFAULT_PRESET, get_preset
from model.zeroshot import Label, LabelSet
from plipbot.errors import BotStoreError, LabelSetError
from plipbot.sqldb import SqlStore, snowflake

if TYPE_CHECKING:
    from plipbot.settings import Settings

__all__ = [
    "ChannelConfig",
    "ConfigAction",
    "ConfigChange",
    "GuildConfigStore",
    "GuildSettings",
    "LabelSource",
    "bot_database_url",
]

log = logging.getLogger(__name__)

BOT_BACKENDS = frozenset({"sqlite", "postgresql"})


def bot_database_url(settings: Settings) -> str:
    """Where the bot keeps its configuration and feedback.

    With `ledger.url` set (PostgreSQL in production), the same database: one service to run and back up,
    and the `bot_` tables never collide with the ledger's. Without it, a SQLite file of its own next to
    the ledger's: the consent file stays the legal record (kept and backed up on its own terms) and the
    bot's frequent small writes (first-post notices, feedback clicks) never queue for its write lock.
    """
    return settings.ledger.url or f"sqlite:///{settings.data_dir}/bot.sqlite3"


def _now() -> datetime:
    return datetime.now(UTC)


def _shared_templates(label_set: LabelSet) -> tuple[str, ...]:
    """The templates every label uses, so labels added later are prompted alike; () if they differ."""
    first = label_set.labels[0].templates
    return first if all(label.templates == first for label in label_set.labels) else ()


def _casefolded(texts: Sequence[str]) -> dict[str, str]:
    return {text.strip().casefold(): text.strip() for text in texts}


class GuildConfigStore(SqlStore):
    """Durable per-server and per-channel configuration of the bot."""

    metadata = GuildTables.metadata
    database_name = "bot database"
    error = BotStoreError
    backends = BOT_BACKENDS
    unreachable_message = "The bot's settings database is unreachable; try again later."

    @classmethod
    def from_settings(cls, settings: Settings) -> GuildConfigStore:
        """The store in the database `bot_database_url(settings)` names."""
        return cls(bot_database_url(settings))

    # --- label sets -----------------------------------------------------------------------------------

    def effective_label_set(self, guild_id: int, channel_id: int) -> tuple[LabelSet, LabelSource]:
        """The label set a channel uses and where it comes from: channel, server, or the default preset."""
        snowflake("guild_id", guild_id)
        snowflake("channel_id", channel_id)
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
        return self._clear_labels(guild_id, snowflake("channel_id", channel_id), actor_id)

    def clear_server_labels(self, guild_id: int, *, actor_id: int) -> bool:
        """Return the server to the default preset (channel overrides stay); False if it had no set."""
        return self._clear_labels(guild_id, None, actor_id)

    def _label_rows(
        self, session: Session, guild_id: int, channel_id: int | None, *, lock: bool
    ) -> dict[int, LabelSetRow]:
        """The server's row and the channel's, keyed by channel id (`SERVER_WIDE` for the server's)."""
        scopes = [SERVER_WIDE] if channel_id is None else [SERVER_WIDE, channel_id]
        statement = sa.select(LabelSetRow).where(
            LabelSetRow.guild_id == guild_id, LabelSetRow.channel_id.in_(scopes)
        )
        if lock:
            statement = statement.with_for_update()
        return {row.channel_id: row for row in session.scalars(statement)}

    @staticmethod
    def _resolve(
        rows: Mapping[int, LabelSetRow], guild_id: int, channel_id: int | None
    ) -> tuple[LabelSet, LabelSource]:
        """The most specific stored set that still validates, else the default preset.

        A stored set that no longer passes validation (limits tightened in a later release) is skipped
        with a warning rather than breaking every answer in the channel.
        """
        candidates = [(channel_id, LabelSource.CHANNEL), (SERVER_WIDE, LabelSource.SERVER)]
        for scope, source in candidates:
            row = rows.get(scope) if scope is not None else None
            if row is None:
                continue
            try:
                return label_set_from_json(row.label_set), source
            except (LabelSetError, KeyError, TypeError) as err:
                reason = type(err).__name__  # not its text: it quotes the labels
                log.warning("stored %s label set of guild %s skipped: %s", source, guild_id, reason)
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
        snowflake("guild_id", guild_id)
        if channel_id is not None:
            snowflake("channel_id", channel_id)
        scope = SERVER_WIDE if channel_id is None else channel_id

        def change(session: Session) -> LabelSet:
            rows = self._label_rows(session, guild_id, channel_id, lock=True)
            current, _source = self._resolve(rows, guild_id, channel_id)
            label_set = build(current)
            now = _now()
            row = rows.get(scope)
            if row is None:
                row = LabelSetRow(guild_id=guild_id, channel_id=scope)
                session.add(row)
            row.label_set = label_set_to_json(label_set)
            row.updated_at = now
            row.updated_by = actor_id
            self._audit(session, now, guild_id, channel_id, actor_id, action, detail)
            return label_set

        return self._write(change)

    def _clear_labels(self, guild_id: int, channel_id: int | None, actor_id: int) -> bool:
        snowflake("guild_id", guild_id)
        scope = SERVER_WIDE if channel_id is None else channel_id

        def change(session: Session) -> bool:
            deleted = session.scalars(
                sa.delete(LabelSetRow)
                .where(LabelSetRow.guild_id == guild_id, LabelSetRow.channel_id == scope)
                .returning(LabelSetRow.channel_id)
            ).all()
            if not deleted:
                return False
            self._audit(session, _now(), guild_id, channel_id, actor_id, ConfigAction.CLEAR_LABELS, None)
            return True

        return self._write(change)

    # --- switches -------------------------------------------------------------------------------------

    def guild_settings(self, guild_id: int) -> GuildSettings:
        """The server's switches, defaults where nothing was set."""
        snowflake("guild_id", guild_id)
        with self._transaction(write=False) as session:
            row = session.get(GuildRow, guild_id)
            return self._default_guild(guild_id).to_settings() if row is None else row.to_settings()

    def channel_config(self, guild_id: int, channel_id: int) -> ChannelConfig:
        """Everything about one channel in one read (the on-message path calls this once per post)."""
        snowflake("guild_id", guild_id)
        snowflake("channel_id", channel_id)
        with self._transaction(write=False) as session:
            guild = session.get(GuildRow, guild_id) or self._default_guild(guild_id)
            channel = session.get(ChannelRow, (guild_id, channel_id))
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

    def sharing_guilds(self) -> frozenset[int]:
        """Every server whose sharing is on now: searches read it at query time (`SearchFilter`), so a
        server that turned sharing off is hidden at once, before its cases are re-scoped."""
        with self._transaction(write=False) as session:
            return frozenset(session.scalars(sa.select(GuildRow.guild_id).where(GuildRow.sharing.is_(True))))

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
        snowflake("guild_id", guild_id)
        if channel_id is None:
            return self._write(lambda session: self._set_server_enabled(session, guild_id, enabled, actor_id))
        snowflake("channel_id", channel_id)

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
            sa.update(ChannelRow)
            .where(ChannelRow.guild_id == guild_id, ChannelRow.bot_enabled.is_not(None))
            .values(bot_enabled=None)
            .returning(ChannelRow.channel_id)
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
        snowflake("guild_id", guild_id)
        snowflake("channel_id", channel_id)

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
            snowflake("role_id", role_id)
        return self._set_guild_field(
            guild_id, "moderator_role_id", role_id, actor_id, ConfigAction.MODERATOR_ROLE
        )

    def _set_guild_field(
        self, guild_id: int, field: str, value: bool | int | None, actor_id: int, action: ConfigAction
    ) -> bool:
        snowflake("guild_id", guild_id)

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
    def _default_guild(guild_id: int) -> GuildRow:
        return GuildRow(
            guild_id=guild_id,
            bot_enabled=DEFAULT_BOT_ENABLED,
            sharing=DEFAULT_SHARING,
            threads=DEFAULT_THREADS,
            moderator_role_id=None,
            updated_at=_now(),
        )

    def _ensure_guild(self, session: Session, guild_id: int) -> GuildRow:
        """The server's row, locked until commit; created with the defaults if missing."""
        row = session.scalars(
            sa.select(GuildRow).where(GuildRow.guild_id == guild_id).with_for_update()
        ).one_or_none()
        if row is None:
            row = self._default_guild(guild_id)
            session.add(row)
        return row

    @staticmethod
    def _ensure_channel(session: Session, guild_id: int, channel_id: int) -> ChannelRow:
        """The channel's row, locked until commit; created with the defaults if missing."""
        row = session.scalars(
            sa.select(ChannelRow)
            .where(ChannelRow.guild_id == guild_id, ChannelRow.channel_id == channel_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            row = ChannelRow(
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
        snowflake("guild_id", guild_id)
        snowflake("user_id", user_id)
        values = {"guild_id": guild_id, "user_id": user_id, "noticed_at": _now()}
        insert = postgresql_insert if self._dialect == "postgresql" else sqlite_insert
        statement = insert(NoticeRow).values(values).on_conflict_do_nothing().returning(NoticeRow.user_id)
        with self._transaction(write=True) as session:
            return session.execute(statement).first() is not None

    store_name = "notices"
    """As a `plipbot.user_data.UserDataStore`: what the configuration holds about users."""

    def forget_user(self, user_id: int, guild_id: int | None = None) -> int:
        """Delete what the configuration holds about a user (their first-post notices) in `guild_id`, or
        in every server when None; returns the count.

        Audit rows keep moderators' ids: they record who changed a server's settings, not the user.
        """
        snowflake("user_id", user_id)
        statement = sa.delete(NoticeRow).where(NoticeRow.user_id == user_id)
        if guild_id is not None:
            statement = statement.where(NoticeRow.guild_id == guild_id)
        with self._transaction(write=True) as session:
            return len(session.scalars(statement.returning(NoticeRow.guild_id)).all())

    def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        """Notices are kept per (server, user), never per message: a deleted post leaves nothing here."""
        return 0

    # --- audit ----------------------------------------------------------------------------------------

    def audit(self, guild_id: int, *, limit: int | None = None) -> list[ConfigChange]:
        """The server's configuration changes, oldest first (the latest `limit` when given)."""
        snowflake("guild_id", guild_id)
        with self._transaction(write=False) as session:
            statement = (
                sa.select(ConfigAuditRow)
                .where(ConfigAuditRow.guild_id == guild_id)
                .order_by(ConfigAuditRow.id.desc())
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
            ConfigAuditRow(
                at=at,
                guild_id=guild_id,
                channel_id=channel_id,
                actor_id=actor_id,
                action=action.value,
                detail=None if detail is None else dict(detail),
            )
        )
