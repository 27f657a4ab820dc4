"""Builders of Discord API v10 JSON payloads, shaped the way discord.py 2.7 parses them.

Every builder returns a fresh ``dict`` with ids as strings (as Discord sends them). They hold no state
except the snowflake counter, so tests can build payloads without a running fake; the fake
(:mod:`tests.fakediscord.server`) uses the same builders for what it sends back.

Field sets follow the Discord docs, trimmed to what discord.py reads; where discord.py indexes a key
directly (``data['flags']`` on members, ``attachment_size_limit`` on interactions) the key is always set.
"""

from __future__ import annotations

import datetime as dt
import itertools
import mimetypes
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord

Payload = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # bytes; Discord's upload limit for unboosted guilds

# Channel, interaction and component type numbers used below (Discord docs, "Channel Types" etc.).
GUILD_TEXT = 0
DM = 1
GUILD_CATEGORY = 4
PUBLIC_THREAD = 11
INTERACTION_PING = 1
INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_MESSAGE_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5
COMMAND_CHAT_INPUT = 1
COMMAND_USER = 2
COMMAND_MESSAGE = 3
COMPONENT_ACTION_ROW = 1
COMPONENT_BUTTON = 2
COMPONENT_STRING_SELECT = 3
COMPONENT_TEXT_INPUT = 4
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_USER = 6
OPTION_CHANNEL = 7
OPTION_ROLE = 8
OPTION_NUMBER = 10
OPTION_ATTACHMENT = 11
MESSAGE_DEFAULT = 0
MESSAGE_REPLY = 19
MESSAGE_CHAT_INPUT_COMMAND = 20
MESSAGE_CONTEXT_MENU_COMMAND = 23
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7

EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    read_message_history=True,
    use_application_commands=True,
).value
BOT_ROLE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    manage_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    read_message_history=True,
    use_application_commands=True,
).value

_snowflake_lock = threading.Lock()
_snowflake_counter = itertools.count()


def snowflake(at: dt.datetime | None = None) -> str:
    """A new, unique Discord id whose timestamp part is ``at`` (default: now), as Discord sends it."""
    millis = int((at.timestamp() if at else time.time()) * 1000) - DISCORD_EPOCH_MS
    with _snowflake_lock:
        increment = next(_snowflake_counter)
    # worker/process bits are zero; the 12-bit increment wraps, so mix the high bits of the counter
    # into the timestamp to stay unique when one millisecond sees more than 4096 ids
    return str(((millis + (increment >> 12)) << 22) | (increment & 0xFFF))


def iso_timestamp(at: dt.datetime | None = None) -> str:
    return (at or dt.datetime.now(dt.UTC)).isoformat()


def interaction_token() -> str:
    return "fake-interaction-" + secrets.token_urlsafe(24)


def permissions_of(member: Payload, roles: Iterable[Payload], guild_id: str) -> int:
    """Guild-level permissions of a member: @everyone plus their roles (channel overwrites ignored)."""
    role_by_id = {role["id"]: role for role in roles}
    value = int(role_by_id[guild_id]["permissions"]) if guild_id in role_by_id else 0
    for role_id in member.get("roles", []):
        if role_id in role_by_id:
            value |= int(role_by_id[role_id]["permissions"])
    if value & discord.Permissions.administrator.flag:
        return discord.Permissions.all().value
    return value


def guess_content_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


# --- users, roles, members ---------------------------------------------------------------------------


def user_payload(
    *,
    user_id: str | None = None,
    username: str = "pathologist",
    global_name: str | None = None,
    bot: bool = False,
    avatar: str | None = None,
) -> Payload:
    payload: Payload = {
        "id": user_id or snowflake(),
        "username": username,
        "discriminator": "0",
        "global_name": global_name,
        "avatar": avatar,
        "public_flags": 0,
    }
    if bot:
        payload["bot"] = True
    return payload


def bot_user_payload(*, user_id: str | None = None, username: str = "plipbot") -> Payload:
    """The bot's own user as ``GET /users/@me`` and READY return it (verified, no MFA)."""
    payload = user_payload(user_id=user_id, username=username, bot=True)
    payload.update({"verified": True, "mfa_enabled": False, "flags": 0})
    return payload


def role_payload(
    *,
    role_id: str | None = None,
    name: str,
    permissions: int = 0,
    position: int = 0,
    color: int = 0,
    hoist: bool = False,
    managed: bool = False,
    mentionable: bool = False,
    bot_id: str | None = None,
) -> Payload:
    payload: Payload = {
        "id": role_id or snowflake(),
        "name": name,
        "color": color,
        "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
        "hoist": hoist,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": managed,
        "mentionable": mentionable,
        "flags": 0,
    }
    if bot_id is not None:
        payload["tags"] = {"bot_id": bot_id}
    return payload


def member_payload(
    user: Payload,
    *,
    roles: Sequence[str] = (),
    nick: str | None = None,
    joined_at: dt.datetime | None = None,
    permissions: int | None = None,
    include_user: bool = True,
) -> Payload:
    """A guild member. ``permissions`` is only present in interaction payloads (Discord computes it)."""
    payload: Payload = {
        "roles": list(roles),
        "nick": nick,
        "avatar": None,
        "joined_at": iso_timestamp(joined_at),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }
    if include_user:
        payload["user"] = user
    if permissions is not None:
        payload["permissions"] = str(permissions)
    return payload


# --- channels and guilds -----------------------------------------------------------------------------


def text_channel_payload(
    *,
    guild_id: str,
    name: str,
    channel_id: str | None = None,
    position: int = 0,
    topic: str | None = None,
    parent_id: str | None = None,
    nsfw: bool = False,
    permission_overwrites: Sequence[Payload] = (),
) -> Payload:
    return {
        "id": channel_id or snowflake(),
        "type": GUILD_TEXT,
        "guild_id": guild_id,
        "name": name,
        "position": position,
        "topic": topic,
        "parent_id": parent_id,
        "nsfw": nsfw,
        "rate_limit_per_user": 0,
        "last_message_id": None,
        "default_auto_archive_duration": 1440,
        "permission_overwrites": list(permission_overwrites),
        "flags": 0,
    }


def category_payload(
    *, guild_id: str, name: str, channel_id: str | None = None, position: int = 0
) -> Payload:
    return {
        "id": channel_id or snowflake(),
        "type": GUILD_CATEGORY,
        "guild_id": guild_id,
        "name": name,
        "position": position,
        "parent_id": None,
        "nsfw": False,
        "permission_overwrites": [],
        "flags": 0,
    }


def thread_payload(
    *,
    guild_id: str,
    parent_id: str,
    owner_id: str,
    name: str,
    thread_id: str | None = None,
    thread_type: int = PUBLIC_THREAD,
    auto_archive_duration: int = 1440,
) -> Payload:
    return {
        "id": thread_id or snowflake(),
        "type": thread_type,
        "guild_id": guild_id,
        "parent_id": parent_id,
        "owner_id": owner_id,
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": auto_archive_duration,
            "archive_timestamp": iso_timestamp(),
            "locked": False,
            "create_timestamp": iso_timestamp(),
        },
    }


def guild_payload(
    *,
    name: str,
    owner_id: str,
    guild_id: str | None = None,
    roles: Sequence[Payload] = (),
    channels: Sequence[Payload] = (),
    members: Sequence[Payload] = (),
    threads: Sequence[Payload] = (),
    everyone_permissions: int = EVERYONE_PERMISSIONS,
) -> Payload:
    """A full GUILD_CREATE payload. An @everyone role (id == guild id) is added unless ``roles`` has one."""
    guild_id = guild_id or snowflake()
    all_roles = list(roles)
    if not any(role["id"] == guild_id for role in all_roles):
        all_roles.insert(
            0, role_payload(role_id=guild_id, name="@everyone", permissions=everyone_permissions)
        )
    return {
        "id": guild_id,
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": owner_id,
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "features": [],
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "premium_progress_bar_enabled": False,
        "roles": all_roles,
        "emojis": [],
        "stickers": [],
        "channels": [dict(channel) for channel in channels],
        "threads": [dict(thread) for thread in threads],
        "members": [dict(member) for member in members],
        "member_count": len(members),
        "large": len(members) >= 250,
        "unavailable": False,
        "joined_at": iso_timestamp(),
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


# --- messages and attachments ------------------------------------------------------------------------


def attachment_payload(
    *,
    filename: str,
    size: int,
    url: str,
    proxy_url: str | None = None,
    attachment_id: str | None = None,
    content_type: str | None = None,
    width: int | None = None,
    height: int | None = None,
    description: str | None = None,
    ephemeral: bool = False,
) -> Payload:
    payload: Payload = {
        "id": attachment_id or snowflake(),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": proxy_url or url,
        "content_type": content_type or guess_content_type(filename),
        "flags": 0,
    }
    if width is not None and height is not None:
        payload["width"] = width
        payload["height"] = height
    if description is not None:
        payload["description"] = description
    if ephemeral:
        payload["ephemeral"] = True
    return payload


def mention_payload(user: Payload, member: Payload | None = None) -> Payload:
    """An entry of ``message.mentions``: the user, with the member (minus ``user``) in guilds."""
    mention = dict(user)
    if member is not None:
        mention["member"] = {key: value for key, value in member.items() if key != "user"}
    return mention


def message_payload(
    *,
    channel_id: str,
    author: Payload,
    content: str = "",
    message_id: str | None = None,
    guild_id: str | None = None,
    member: Payload | None = None,
    attachments: Sequence[Payload] = (),
    mentions: Sequence[Payload] = (),
    mention_roles: Sequence[str] = (),
    embeds: Sequence[Payload] = (),
    components: Sequence[Payload] = (),
    message_reference: Payload | None = None,
    referenced_message: Payload | None = None,
    message_type: int | None = None,
    flags: int = 0,
    application_id: str | None = None,
    interaction_metadata: Payload | None = None,
    timestamp: dt.datetime | None = None,
) -> Payload:
    """A message as MESSAGE_CREATE carries it. ``member`` (no ``user`` key) and ``guild_id`` for guilds."""
    if message_type is None:
        message_type = MESSAGE_REPLY if message_reference else MESSAGE_DEFAULT
    payload: Payload = {
        "id": message_id or snowflake(timestamp),
        "type": message_type,
        "channel_id": channel_id,
        "author": author,
        "content": content,
        "timestamp": iso_timestamp(timestamp),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": list(mentions),
        "mention_roles": list(mention_roles),
        "attachments": list(attachments),
        "embeds": list(embeds),
        "components": list(components),
        "pinned": False,
        "flags": flags,
    }
    if guild_id is not None:
        payload["guild_id"] = guild_id
    if member is not None:
        payload["member"] = {key: value for key, value in member.items() if key != "user"}
    if message_reference is not None:
        payload["message_reference"] = message_reference
    if referenced_message is not None:
        payload["referenced_message"] = referenced_message
    if application_id is not None:
        payload["application_id"] = application_id
    if interaction_metadata is not None:
        payload["interaction_metadata"] = interaction_metadata
    return payload


def button_payload(*, custom_id: str, label: str, style: int = 1, disabled: bool = False) -> Payload:
    return {
        "type": COMPONENT_BUTTON,
        "custom_id": custom_id,
        "label": label,
        "style": style,
        "disabled": disabled,
    }


def action_row_payload(*components: Payload) -> Payload:
    return {"type": COMPONENT_ACTION_ROW, "components": list(components)}


# --- interactions ------------------------------------------------------------------------------------


def _interaction_base(
    *,
    interaction_type: int,
    application_id: str,
    data: Payload | None,
    channel: Payload,
    member: Payload | None,
    user: Payload | None,
    interaction_id: str | None,
    token: str | None,
    app_permissions: int,
    locale: str,
    attachment_size_limit: int,
    message: Payload | None = None,
) -> Payload:
    guild_id = channel.get("guild_id")
    payload: Payload = {
        "id": interaction_id or snowflake(),
        "application_id": application_id,
        "type": interaction_type,
        "token": token or interaction_token(),
        "version": 1,
        "channel": dict(channel),
        "channel_id": channel["id"],
        "app_permissions": str(app_permissions),
        "locale": locale,
        "entitlements": [],
        "attachment_size_limit": attachment_size_limit,
    }
    if data is not None:
        payload["data"] = data
    if guild_id is not None:
        if member is None:
            raise ValueError("an interaction in a guild channel needs the invoking member")
        payload.update(
            guild_id=guild_id,
            guild={"id": guild_id, "locale": "en-US", "features": []},
            guild_locale="en-US",
            member=member,
            authorizing_integration_owners={"0": guild_id},
            context=0,
        )
    else:
        if user is None:
            raise ValueError("an interaction outside a guild needs the invoking user")
        payload.update(user=user, authorizing_integration_owners={"1": user["id"]}, context=1)
    if message is not None:
        payload["message"] = message
    return payload


def command_option(name: str, value: Any, option_type: int | None = None) -> Payload:
    """One ``data.options`` entry; the type is inferred for str, bool, int and float values."""
    if option_type is None:
        if isinstance(value, bool):
            option_type = OPTION_BOOLEAN
        elif isinstance(value, int):
            option_type = OPTION_INTEGER
        elif isinstance(value, float):
            option_type = OPTION_NUMBER
        elif isinstance(value, str):
            option_type = OPTION_STRING
        else:
            raise TypeError(f"cannot infer the option type of {value!r}; pass option_type")
    return {"name": name, "type": option_type, "value": value}


OPTION_SUB_COMMAND = 1


class SubcommandOptions(dict):  # type: ignore[type-arg]
    """Marks a slash-command option as a subcommand (`/group sub ...`) holding its own options."""


def subcommand_option(name: str, options: Payload, resolved: ResolvedData | None = None) -> Payload:
    """A subcommand entry of ``data.options`` with its options: primitives, or role payloads (with
    ``resolved``, which then carries the role as Discord sends it)."""
    entries = []
    for key, value in options.items():
        if resolved is not None and is_role_payload(value):
            entries.append(role_option(key, value, resolved))
        else:
            entries.append(command_option(key, value))
    return {"name": name, "type": OPTION_SUB_COMMAND, "options": entries}


def is_role_payload(value: Any) -> bool:
    """Whether an option value is a role (from :func:`role_payload`), not a user or an attachment."""
    return isinstance(value, dict) and {"id", "name", "permissions", "position"} <= set(value)


def role_option(name: str, role: Payload, resolved: ResolvedData) -> Payload:
    """A role option: the value is the id, the role goes into ``resolved.roles``."""
    resolved.roles[role["id"]] = role
    return {"name": name, "type": OPTION_ROLE, "value": role["id"]}


@dataclass
class ResolvedData:
    """``data.resolved`` of an interaction, filled while building options."""

    users: dict[str, Payload] = field(default_factory=dict)
    members: dict[str, Payload] = field(default_factory=dict)
    roles: dict[str, Payload] = field(default_factory=dict)
    channels: dict[str, Payload] = field(default_factory=dict)
    attachments: dict[str, Payload] = field(default_factory=dict)
    messages: dict[str, Payload] = field(default_factory=dict)

    def to_payload(self) -> Payload:
        return {name: value for name, value in vars(self).items() if value}


def slash_command_interaction(
    *,
    application_id: str,
    name: str,
    channel: Payload,
    member: Payload | None = None,
    user: Payload | None = None,
    options: Sequence[Payload] = (),
    resolved: ResolvedData | Payload | None = None,
    command_id: str | None = None,
    command_guild_id: str | None = None,
    interaction_id: str | None = None,
    token: str | None = None,
    app_permissions: int = BOT_ROLE_PERMISSIONS,
    locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
) -> Payload:
    """INTERACTION_CREATE for a chat-input (slash) command.

    ``command_guild_id`` is set when the command was registered for a guild: discord.py's tree looks the
    command up among that guild's commands then. Attachment options carry the attachment id as ``value``
    and the attachment itself in ``resolved.attachments`` (see :func:`attachment_option`).
    """
    data: Payload = {
        "id": command_id or snowflake(),
        "name": name,
        "type": COMMAND_CHAT_INPUT,
        "options": list(options),
    }
    resolved_payload = resolved.to_payload() if isinstance(resolved, ResolvedData) else resolved
    if resolved_payload:
        data["resolved"] = resolved_payload
    if command_guild_id is not None:
        data["guild_id"] = command_guild_id
    return _interaction_base(
        interaction_type=INTERACTION_APPLICATION_COMMAND,
        application_id=application_id,
        data=data,
        channel=channel,
        member=member,
        user=user,
        interaction_id=interaction_id,
        token=token,
        app_permissions=app_permissions,
        locale=locale,
        attachment_size_limit=attachment_size_limit,
    )


def attachment_option(name: str, attachment: Payload, resolved: ResolvedData) -> Payload:
    """An attachment option: the value is the id, the attachment goes into ``resolved.attachments``."""
    resolved.attachments[attachment["id"]] = attachment
    return {"name": name, "type": OPTION_ATTACHMENT, "value": attachment["id"]}


def user_option(name: str, user: Payload, resolved: ResolvedData, member: Payload | None = None) -> Payload:
    resolved.users[user["id"]] = user
    if member is not None:
        resolved.members[user["id"]] = {key: value for key, value in member.items() if key != "user"}
    return {"name": name, "type": OPTION_USER, "value": user["id"]}


def message_command_interaction(
    *,
    application_id: str,
    name: str,
    channel: Payload,
    target_message: Payload,
    member: Payload | None = None,
    user: Payload | None = None,
    command_id: str | None = None,
    command_guild_id: str | None = None,
    interaction_id: str | None = None,
    token: str | None = None,
    app_permissions: int = BOT_ROLE_PERMISSIONS,
    locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
) -> Payload:
    """INTERACTION_CREATE for a message context-menu command (command type 3) on ``target_message``."""
    data: Payload = {
        "id": command_id or snowflake(),
        "name": name,
        "type": COMMAND_MESSAGE,
        "target_id": target_message["id"],
        "resolved": {"messages": {target_message["id"]: target_message}},
    }
    if command_guild_id is not None:
        data["guild_id"] = command_guild_id
    return _interaction_base(
        interaction_type=INTERACTION_APPLICATION_COMMAND,
        application_id=application_id,
        data=data,
        channel=channel,
        member=member,
        user=user,
        interaction_id=interaction_id,
        token=token,
        app_permissions=app_permissions,
        locale=locale,
        attachment_size_limit=attachment_size_limit,
    )


def component_interaction(
    *,
    application_id: str,
    channel: Payload,
    message: Payload,
    custom_id: str,
    component_type: int = COMPONENT_BUTTON,
    values: Sequence[str] | None = None,
    member: Payload | None = None,
    user: Payload | None = None,
    interaction_id: str | None = None,
    token: str | None = None,
    app_permissions: int = BOT_ROLE_PERMISSIONS,
    locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
) -> Payload:
    """INTERACTION_CREATE for a button click (or a select with ``values``) on ``message``.

    discord.py routes it to the view stored for ``message['id']``, so ``message`` must be the message the
    bot sent the view with (the fake keeps those).
    """
    data: Payload = {"custom_id": custom_id, "component_type": component_type}
    if values is not None:
        data["values"] = list(values)
    return _interaction_base(
        interaction_type=INTERACTION_MESSAGE_COMPONENT,
        application_id=application_id,
        data=data,
        channel=channel,
        member=member,
        user=user,
        interaction_id=interaction_id,
        token=token,
        app_permissions=app_permissions,
        locale=locale,
        attachment_size_limit=attachment_size_limit,
        message=message,
    )


def modal_submit_interaction(
    *,
    application_id: str,
    channel: Payload,
    custom_id: str,
    values: Mapping[str, str],
    member: Payload | None = None,
    user: Payload | None = None,
    message: Payload | None = None,
    interaction_id: str | None = None,
    token: str | None = None,
    app_permissions: int = BOT_ROLE_PERMISSIONS,
    locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
) -> Payload:
    """INTERACTION_CREATE for a modal submit: one action row per text input, ``values`` by custom_id."""
    rows = [
        action_row_payload({"type": COMPONENT_TEXT_INPUT, "custom_id": input_id, "value": value})
        for input_id, value in values.items()
    ]
    return _interaction_base(
        interaction_type=INTERACTION_MODAL_SUBMIT,
        application_id=application_id,
        data={"custom_id": custom_id, "components": rows},
        channel=channel,
        member=member,
        user=user,
        interaction_id=interaction_id,
        token=token,
        app_permissions=app_permissions,
        locale=locale,
        attachment_size_limit=attachment_size_limit,
        message=message,
    )


# --- the world a fake serves -------------------------------------------------------------------------


@dataclass
class FakeWorld:
    """Who and what exists on the fake: the bot, its application, users and guilds (GUILD_CREATE payloads).

    ``application_id`` equals the bot user id, as for every bot created in the developer portal.
    """

    token: str
    bot_user: Payload
    owner: Payload
    guilds: list[Payload]
    users: list[Payload] = field(default_factory=list)

    @property
    def application_id(self) -> str:
        return self.bot_user["id"]


def default_world(*, token: str = "fake-bot-token") -> FakeWorld:
    """One guild "Pathology Lab" with a "Cases" category, ``#cases`` and ``#general``, a pathologist, the
    owner and the bot (with its managed role), all able to see and write everywhere."""
    bot_user = bot_user_payload()
    owner = user_payload(username="lab_owner", global_name="Lab Owner")
    pathologist = user_payload(username="dr_path", global_name="Dr. Path")
    guild_id = snowflake()
    pathologist_role = role_payload(name="Pathologist", position=1, mentionable=True, color=0x8E44AD)
    bot_role = role_payload(
        name="plipbot", position=2, permissions=BOT_ROLE_PERMISSIONS, managed=True, bot_id=bot_user["id"]
    )
    category = category_payload(guild_id=guild_id, name="Cases", position=0)
    cases = text_channel_payload(
        guild_id=guild_id, name="cases", position=0, parent_id=category["id"], topic="Case discussion"
    )
    general = text_channel_payload(guild_id=guild_id, name="general", position=1)
    guild = guild_payload(
        guild_id=guild_id,
        name="Pathology Lab",
        owner_id=owner["id"],
        roles=[pathologist_role, bot_role],
        channels=[category, cases, general],
        members=[
            member_payload(bot_user, roles=[bot_role["id"]]),
            member_payload(owner),
            member_payload(pathologist, roles=[pathologist_role["id"]], nick="Path"),
        ],
    )
    return FakeWorld(token=token, bot_user=bot_user, owner=owner, guilds=[guild], users=[owner, pathologist])
