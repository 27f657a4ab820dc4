"""The tables behind `bot.guild_config.GuildConfigStore`: server and channel switches, label sets,
first-post notices and the append-only audit of configuration changes.

Label sets are stored as JSON snapshots (a preset is copied when chosen, so a code change never
silently changes a server's labels), versioned by `LABEL_SET_FORMAT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.guild_values import ConfigAction, ConfigChange, GuildSettings
from model.zeroshot import Label, LabelSet
from plipbot.sqldb import RowId, UtcDateTime

SERVER_WIDE = 0
"""`channel_id` of a server-wide label set: snowflakes are never 0, and a NULL in a primary key would
make every server-wide row distinct."""

LABEL_SET_FORMAT = 1
"""Version of the stored label-set JSON, so a later format can still read today's rows."""


class GuildTables(DeclarativeBase):
    """The declarative base of the configuration tables (their own metadata)."""


class GuildRow(GuildTables):
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


class ChannelRow(GuildTables):
    __tablename__ = "bot_channel_settings"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    bot_enabled: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    """None: follow the server."""
    ingest_enabled: Mapped[bool] = mapped_column(sa.Boolean)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LabelSetRow(GuildTables):
    __tablename__ = "bot_label_sets"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    """`SERVER_WIDE` (0) for the server's set."""
    label_set: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_by: Mapped[int] = mapped_column(sa.BigInteger)


class NoticeRow(GuildTables):
    """Who has been shown the first-post explanation in which server (the key is the whole point)."""

    __tablename__ = "bot_first_notices"

    guild_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False, index=True)
    noticed_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ConfigAuditRow(GuildTables):
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


def label_set_to_json(label_set: LabelSet) -> dict[str, Any]:
    return {
        "format": LABEL_SET_FORMAT,
        "name": label_set.name,
        "description": label_set.description,
        "labels": [{"text": label.text, "templates": list(label.templates)} for label in label_set.labels],
    }


def label_set_from_json(data: Mapping[str, Any]) -> LabelSet:
    """Rebuild (and so re-validate) a stored set; raises LabelSetError if it no longer passes."""
    labels = tuple(Label(str(item["text"]), tuple(item.get("templates", ()))) for item in data["labels"])
    return LabelSet(name=str(data["name"]), labels=labels, description=str(data.get("description", "")))
