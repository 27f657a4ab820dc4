"""The values the bot's configuration store hands out: frozen dataclasses and enums, never ORM rows.

Defaults, chosen so that an unconfigured server is useful and private: the bot answers everywhere
(`bot_enabled`), no channel grows the corpus until a moderator enables ingest there, nothing is shared
beyond the server, and answers are plain replies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from model.zeroshot import LabelSet

DEFAULT_BOT_ENABLED = True
DEFAULT_INGEST_ENABLED = False
DEFAULT_SHARING = False
DEFAULT_THREADS = False


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
