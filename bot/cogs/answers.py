"""Mentions, `/suggest`, `/similar`, the two message context menus, and feedback buttons."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.common import attachment_of, files_of
from bot.reply import format_error
from bot.services import Reply, error_reply, image_attachments, strip_mentions

if TYPE_CHECKING:
    from bot.app import PlipBot

log = logging.getLogger(__name__)

DISABLED = "The bot is disabled in this channel."


class CorrectLabelModal(discord.ui.Modal, title="What is the correct label?"):
    """Free-text correction, stored for evaluation."""

    label: discord.ui.TextInput[CorrectLabelModal] = discord.ui.TextInput(
        label="Correct label", max_length=100
    )

    def __init__(self, view: FeedbackView) -> None:
        super().__init__()
        self.feedback_view = view

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.feedback_view.record(interaction, "correct_label", str(self.label.value).strip())


class FeedbackView(discord.ui.View):
    """Helpful / wrong / correct label buttons under an answer; the view carries what it rates."""

    def __init__(self, bot: PlipBot, reply: Reply) -> None:
        super().__init__(timeout=24 * 3600)
        self.bot = bot
        self.reply = reply

    async def record(self, interaction: discord.Interaction, kind: str, correct: str | None = None) -> None:
        message = interaction.message
        services = self.bot.services
        try:
            await asyncio.to_thread(
                services.feedback.record,
                answer_id=message.id if message else interaction.id,
                guild_id=interaction.guild_id or 0,
                channel_id=interaction.channel_id or 0,
                user_id=interaction.user.id,
                kind=kind,
                correct_label=correct,
                predicted=list(self.reply.predicted),
                model_label=self.reply.model_label,
            )
        except Exception:
            log.exception("could not store feedback")
            await interaction.response.send_message(
                format_error("Could not save that; sorry."), ephemeral=True
            )
            return
        await interaction.response.send_message("Thanks, noted for evaluation.", ephemeral=True)

    @discord.ui.button(label="Helpful", style=discord.ButtonStyle.success, custom_id="plipbot:helpful")
    async def helpful(self, interaction: discord.Interaction, _: discord.ui.Button[FeedbackView]) -> None:
        await self.record(interaction, "helpful")

    @discord.ui.button(label="Wrong", style=discord.ButtonStyle.danger, custom_id="plipbot:wrong")
    async def wrong(self, interaction: discord.Interaction, _: discord.ui.Button[FeedbackView]) -> None:
        await self.record(interaction, "wrong")

    @discord.ui.button(
        label="Correct label…", style=discord.ButtonStyle.secondary, custom_id="plipbot:correct"
    )
    async def correct(self, interaction: discord.Interaction, _: discord.ui.Button[FeedbackView]) -> None:
        await interaction.response.send_modal(CorrectLabelModal(self))


class AnswersCog(commands.Cog):
    """Answers to images and questions."""

    def __init__(self, bot: PlipBot) -> None:
        self.bot = bot
        self.suggest_menu = app_commands.ContextMenu(
            name="Suggest labels", callback=self.suggest_from_message
        )
        self.similar_menu = app_commands.ContextMenu(
            name="Find similar cases", callback=self.similar_from_message
        )
        bot.tree.add_command(self.suggest_menu)
        bot.tree.add_command(self.similar_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.suggest_menu.name, type=self.suggest_menu.type)
        self.bot.tree.remove_command(self.similar_menu.name, type=self.similar_menu.type)

    # ------------------------------------------------------------------ helpers

    async def _config(self, guild_id: int, channel_id: int):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(self.bot.services.guild_config.channel_config, guild_id, channel_id)

    def _view(self, reply: Reply) -> discord.ui.View | discord.utils.MISSING:  # type: ignore[valid-type]
        return FeedbackView(self.bot, reply) if reply.ok and reply.feedback else discord.utils.MISSING

    async def _answer_interaction(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        *,
        labels: str | None,
        suggestions: bool,
        cases: bool,
        message_id: int | None,
    ) -> None:
        if interaction.guild_id is None or interaction.channel_id is None:
            await interaction.response.send_message(
                format_error("Use this in a server channel."), ephemeral=True
            )
            return
        config = await self._config(interaction.guild_id, interaction.channel_id)
        if not config.bot_enabled:
            await interaction.response.send_message(format_error(DISABLED), ephemeral=True)
            return
        services = self.bot.services
        wait = services.cooldown_message(interaction.guild_id, interaction.channel_id, interaction.user.id)
        if wait:
            await interaction.response.send_message(format_error(wait), ephemeral=True)
            return
        await interaction.response.defer(thinking=True)  # the model may take longer than Discord's 3 s
        reply = await asyncio.to_thread(
            services.answer_image,
            attachment_of(image),
            config=config,
            message_id=message_id,
            labels_text=labels,
            with_suggestions=suggestions,
            with_cases=cases,
        )
        await interaction.followup.send(reply.content, files=files_of(reply), view=self._view(reply))

    # ------------------------------------------------------------------ mentions

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        bot_user = self.bot.user
        if (
            message.author.bot
            or message.guild is None
            or bot_user is None
            or bot_user not in message.mentions
        ):
            return
        config = await self._config(message.guild.id, message.channel.id)
        if not config.bot_enabled:
            return
        services = self.bot.services
        wait = services.cooldown_message(message.guild.id, message.channel.id, message.author.id)
        if wait:
            await message.reply(format_error(wait), mention_author=False, delete_after=10)
            return
        attachments = [attachment_of(a) for a in message.attachments]
        images, others = image_attachments(attachments, services.settings.discord.max_images)

        async def answer() -> list[Reply]:
            assert message.guild is not None and bot_user is not None
            replies: list[Reply] = []
            for image in images:
                replies.append(
                    await asyncio.to_thread(
                        services.answer_image, image, config=config, message_id=message.id
                    )
                )
            if not images and others:
                replies.append(error_reply(services.check_attachment(others[0]) or "Attach an image."))
            elif not images:
                text = strip_mentions(message.content, bot_user.id)
                replies.append(await asyncio.to_thread(services.search_text, text, guild_id=message.guild.id))
            return replies

        # The answer starts before the typing indicator's request, not after its round trip to Discord.
        work = asyncio.ensure_future(answer())
        try:
            async with message.channel.typing():
                replies = await work
        finally:
            work.cancel()  # no-op once done; stops the answer if typing failed or we were cancelled
        target: discord.abc.Messageable = message.channel
        if config.threads and isinstance(message.channel, discord.TextChannel):
            name = f"plipbot · {images[0].filename if images else 'search'}"[:100]
            target = await message.create_thread(name=name)
        for reply in replies:
            kwargs = {"content": reply.content, "files": files_of(reply), "view": self._view(reply)}
            if target is message.channel:
                await message.reply(mention_author=False, **kwargs)
            else:
                await target.send(**kwargs)

    # ------------------------------------------------------------------ slash commands

    @app_commands.command(
        name="suggest", description="Label suggestions for an image (decision support only)"
    )
    @app_commands.describe(
        image="The image to analyse", labels="Comma-separated labels instead of the channel's set"
    )
    async def suggest(
        self, interaction: discord.Interaction, image: discord.Attachment, labels: str | None = None
    ) -> None:
        await self._answer_interaction(
            interaction, image, labels=labels, suggestions=True, cases=False, message_id=None
        )

    @app_commands.command(name="similar", description="Similar cases for an image or a description")
    @app_commands.describe(image="Find cases that look like this", query="Or describe what to look for")
    async def similar(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment | None = None,
        query: str | None = None,
    ) -> None:
        if (image is None) == (query is None or not query.strip()):
            await interaction.response.send_message(
                format_error("Give either an image or a query, not both and not neither."), ephemeral=True
            )
            return
        if image is not None:
            await self._answer_interaction(
                interaction, image, labels=None, suggestions=False, cases=True, message_id=None
            )
            return
        if interaction.guild_id is None:
            await interaction.response.send_message(
                format_error("Use this in a server channel."), ephemeral=True
            )
            return
        await interaction.response.defer(thinking=True)
        reply = await asyncio.to_thread(
            self.bot.services.search_text, query or "", guild_id=interaction.guild_id
        )
        await interaction.followup.send(reply.content, files=files_of(reply))

    # ------------------------------------------------------------------ context menus

    async def _from_message(
        self, interaction: discord.Interaction, message: discord.Message, *, suggestions: bool
    ) -> None:
        images = [a for a in message.attachments if attachment_of(a).looks_like_image]
        if not images:
            await interaction.response.send_message(
                format_error("That message has no image."), ephemeral=True
            )
            return
        await self._answer_interaction(
            interaction,
            images[0],
            labels=None,
            suggestions=suggestions,
            cases=not suggestions,
            message_id=message.id,
        )

    async def suggest_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._from_message(interaction, message, suggestions=True)

    async def similar_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        await self._from_message(interaction, message, suggestions=False)
