"""Small adapters shared by the cogs: discord objects in, plain values out, and back."""

from __future__ import annotations

import asyncio
import io

import discord

from bot.guild_config import GuildConfigStore
from bot.moderation import require_moderator
from bot.services import Attachment, Reply


def attachment_of(att: discord.Attachment) -> Attachment:
    """The plain attachment the services take."""
    return Attachment(
        id=att.id, url=att.url, filename=att.filename, size=att.size, content_type=att.content_type
    )


def files_of(reply: Reply) -> list[discord.File]:
    """Reply files as discord.py uploads (fresh objects: a File can be sent only once)."""
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in reply.files]


def member_role_ids(user: discord.abc.User) -> list[int]:
    """Role ids of a guild member (none for a plain user object)."""
    return [role.id for role in getattr(user, "roles", [])]


def is_owner(interaction: discord.Interaction) -> bool:
    """Whether the user owns the server the interaction came from."""
    return interaction.guild is not None and interaction.guild.owner_id == interaction.user.id


def permissions_value(user: discord.abc.User) -> int:
    """Server-wide permission bits of a member (0 outside a server)."""
    perms = getattr(user, "guild_permissions", None)
    return perms.value if perms is not None else 0


async def check_moderator(guild_config: GuildConfigStore, interaction: discord.Interaction) -> None:
    """Raise PermissionDeniedError unless `can_moderate` allows the member in the interaction's server;
    the server's moderator role is a database read, so it is read in a thread."""
    assert interaction.guild_id is not None
    role = await asyncio.to_thread(guild_config.moderator_role, interaction.guild_id)
    require_moderator(
        permissions_value(interaction.user),
        member_role_ids(interaction.user),
        is_owner(interaction),
        role,
    )
