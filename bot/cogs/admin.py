"""Moderator commands: `/labels ...`, `/bot enable|disable`, `/ingest enable|disable`, `/sharing`.

Permission is checked here, by the bot, on every call (Manage Server, Administrator, the owner, or
the configured moderator role): Discord's own command permissions can be changed by any server admin
and are not enough on their own. `/labels list` is open to everyone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.common import check_moderator
from bot.cogs.privacy import PrivacyCog
from bot.moderation import parse_label_list
from bot.reply import format_label_set
from model.presets import preset_names
from model.zeroshot import LabelSet
from plipbot.errors import PlipbotError

if TYPE_CHECKING:
    from bot.app import PlipBot

Where = Literal["channel", "server"]
OnOff = Literal["on", "off"]


def _describe(label_set: LabelSet, source: str) -> str:
    templates = sorted({t for label in label_set.labels for t in label.templates})
    return format_label_set(label_set.texts, templates, source)


class AdminCog(commands.Cog):
    """Per-server and per-channel configuration."""

    labels = app_commands.Group(
        name="labels", description="The label set suggestions are chosen from", guild_only=True
    )
    switch_group = app_commands.Group(name="bot", description="Turn the bot on or off", guild_only=True)
    ingest_group = app_commands.Group(
        name="ingest", description="Which channels may grow the case corpus", guild_only=True
    )

    def __init__(self, bot: PlipBot) -> None:
        self.bot = bot

    async def _moderate(self, interaction: discord.Interaction, change: Callable[[], Any]) -> Any:
        """Check the caller is a moderator, then run `change` (blocking DB work) in a thread."""
        await check_moderator(self.bot.services.guild_config, interaction)
        return await asyncio.to_thread(change)

    def _channel(self, interaction: discord.Interaction, where: Where) -> int | None:
        return interaction.channel_id if where == "channel" else None

    async def _change_labels(
        self, interaction: discord.Interaction, where: Where, change: Callable[..., LabelSet], *args: Any
    ) -> None:
        """Run a GuildConfigStore label change as a moderator and show the resulting set."""
        guild_id, channel_id, actor = (
            interaction.guild_id,
            self._channel(interaction, where),
            interaction.user.id,
        )
        result = await self._moderate(
            interaction, lambda: change(guild_id, *args, channel_id=channel_id, actor_id=actor)
        )
        await interaction.response.send_message(_describe(result, where), ephemeral=True)

    # ------------------------------------------------------------------ /labels

    @labels.command(name="list", description="Show the labels used in this channel")
    async def labels_list(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        store = self.bot.services.guild_config
        label_set, source = await asyncio.to_thread(
            store.effective_label_set, interaction.guild_id, interaction.channel_id
        )
        await interaction.response.send_message(_describe(label_set, source.value), ephemeral=True)

    @labels.command(name="set", description="Replace the label set (comma-separated)")
    async def labels_set(
        self, interaction: discord.Interaction, labels: str, where: Where = "server"
    ) -> None:
        await self._change_labels(
            interaction, where, self.bot.services.guild_config.set_labels, parse_label_list(labels)
        )

    @labels.command(name="add", description="Add labels (comma-separated)")
    async def labels_add(
        self, interaction: discord.Interaction, labels: str, where: Where = "server"
    ) -> None:
        await self._change_labels(
            interaction, where, self.bot.services.guild_config.add_labels, parse_label_list(labels)
        )

    @labels.command(name="remove", description="Remove labels (comma-separated)")
    async def labels_remove(
        self, interaction: discord.Interaction, labels: str, where: Where = "server"
    ) -> None:
        await self._change_labels(
            interaction, where, self.bot.services.guild_config.remove_labels, parse_label_list(labels)
        )

    @labels.command(name="preset", description="Use a built-in label set")
    @app_commands.choices(name=[app_commands.Choice(name=n, value=n) for n in preset_names()])
    async def labels_preset(
        self, interaction: discord.Interaction, name: str, where: Where = "server"
    ) -> None:
        await self._change_labels(interaction, where, self.bot.services.guild_config.use_preset, name)

    @labels.command(name="template", description="Prompt templates with {} for the label, separated by |")
    async def labels_template(
        self, interaction: discord.Interaction, templates: str, where: Where = "server"
    ) -> None:
        await self._change_labels(
            interaction,
            where,
            self.bot.services.guild_config.set_templates,
            [t.strip() for t in templates.split("|") if t.strip()],
        )

    # ------------------------------------------------------------------ learning (bot.cogs.learning)

    def _learning(self) -> Any:
        cog = self.bot.get_cog("LearningCog")
        if cog is None:
            raise PlipbotError("Learning from confirmed examples is not available on this bot.")
        return cog

    @labels.command(name="review", description="Members' label corrections, to approve or reject")
    async def labels_review(self, interaction: discord.Interaction) -> None:
        await self._learning().review(interaction)

    @labels.command(name="learning", description="Let confirmed examples adapt answers here (on/off)")
    async def labels_learning(
        self, interaction: discord.Interaction, state: OnOff, where: Where = "server"
    ) -> None:
        await self._learning().switch(interaction, state == "on", where)

    @labels.command(name="test", description="Zero-shot vs adapted on this server's confirmed examples")
    async def labels_test(self, interaction: discord.Interaction) -> None:
        await self._learning().test(interaction)

    # ------------------------------------------------------------------ /bot, /ingest, /sharing

    @switch_group.command(name="threads", description="Answer in a thread instead of a reply (on/off)")
    async def bot_threads(self, interaction: discord.Interaction, state: OnOff) -> None:
        store, actor = self.bot.services.guild_config, interaction.user.id
        enabled = state == "on"
        await self._moderate(
            interaction, lambda: store.set_threads(interaction.guild_id, enabled, actor_id=actor)
        )
        text = "Answers now open a thread." if enabled else "Answers are now plain replies."
        await interaction.response.send_message(text, ephemeral=True)

    @switch_group.command(
        name="moderator-role", description="The role that may configure the bot (none: Manage Server only)"
    )
    async def bot_moderator_role(
        self, interaction: discord.Interaction, role: discord.Role | None = None
    ) -> None:
        store, actor = self.bot.services.guild_config, interaction.user.id
        role_id = role.id if role is not None else None
        await self._moderate(
            interaction, lambda: store.set_moderator_role(interaction.guild_id, role_id, actor_id=actor)
        )
        text = (
            f"Members with {role.mention} may now configure the bot."
            if role is not None
            else "Only Manage Server (and the owner) may configure the bot now."
        )
        await interaction.response.send_message(text, ephemeral=True)

    async def _switch_bot(self, interaction: discord.Interaction, enabled: bool, where: Where) -> None:
        store, actor = self.bot.services.guild_config, interaction.user.id
        await self._moderate(
            interaction,
            lambda: store.set_bot_enabled(
                interaction.guild_id, enabled, channel_id=self._channel(interaction, where), actor_id=actor
            ),
        )
        state = "enabled" if enabled else "disabled"
        await interaction.response.send_message(f"The bot is now {state} in this {where}.", ephemeral=True)

    @switch_group.command(name="enable", description="Answer mentions and commands here")
    async def bot_enable(self, interaction: discord.Interaction, where: Where = "channel") -> None:
        await self._switch_bot(interaction, True, where)

    @switch_group.command(name="disable", description="Stop answering here")
    async def bot_disable(self, interaction: discord.Interaction, where: Where = "channel") -> None:
        await self._switch_bot(interaction, False, where)

    async def _switch_ingest(self, interaction: discord.Interaction, enabled: bool) -> None:
        store, actor = self.bot.services.guild_config, interaction.user.id
        await self._moderate(
            interaction,
            lambda: store.set_ingest_enabled(
                interaction.guild_id, interaction.channel_id, enabled, actor_id=actor
            ),
        )
        text = (
            "Consenting members' image posts in this channel now join the case corpus."
            if enabled
            else "This channel no longer adds posts to the case corpus."
        )
        await interaction.response.send_message(text, ephemeral=True)

    @ingest_group.command(name="enable", description="Let consenting members' posts here join the corpus")
    async def ingest_enable(self, interaction: discord.Interaction) -> None:
        await self._switch_ingest(interaction, True)

    @ingest_group.command(name="disable", description="Stop adding posts from this channel")
    async def ingest_disable(self, interaction: discord.Interaction) -> None:
        await self._switch_ingest(interaction, False)

    @app_commands.command(
        name="sharing", description="Whether consenting members' cases may join the shared corpus"
    )
    @app_commands.guild_only()
    async def sharing(self, interaction: discord.Interaction, enabled: bool) -> None:
        assert interaction.guild_id is not None
        store, actor, guild_id = self.bot.services.guild_config, interaction.user.id, interaction.guild_id
        await self._moderate(interaction, lambda: store.set_sharing(guild_id, enabled, actor_id=actor))
        # Searches read the switch at query time, so both replies are true as soon as it is stored;
        # the re-scope brings the cases' stored scope in line (and back, for members who chose it).
        privacy = self.bot.get_cog("PrivacyCog")
        if isinstance(privacy, PrivacyCog):
            privacy.queue_rescope(guild_id)
        text = (
            "Sharing is on: cases of members who chose 'shared' consent can now be found from other "
            "servers."
            if enabled
            else "Sharing is off: other servers no longer see this server's cases; they stay in this "
            "server's own corpus."
        )
        await interaction.response.send_message(text, ephemeral=True)
