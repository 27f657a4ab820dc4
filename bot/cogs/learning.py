"""Moderators teach the bot: the "Confirm label…" message menu, `/labels review`, `/labels learning`
and `/labels test` (the slash commands live in the admin cog's `/labels` group and call in here).

Every action checks moderator rights itself (as the admin cog does), and answers privately. The logic
is in `bot.learning`; this cog turns Discord messages into `ConfirmTarget`s and back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.common import check_moderator, files_of
from bot.learning import MAX_REVIEWS_SHOWN, ConfirmTarget, LearningActions
from bot.reply import format_error, user_text
from learning.examples import ReviewDecision
from model.zeroshot import LabelSet
from plipbot.errors import PlipbotError

if TYPE_CHECKING:
    from bot.app import PlipBot
    from bot.feedback import FeedbackRow

log = logging.getLogger(__name__)

NO_IMAGE = "That message has no image (or is not an answer of mine to one)."
MAX_SELECT_OPTIONS = 25
VIEW_TIMEOUT_S = 15 * 60


def _image_attachments(message: discord.Message) -> list[discord.Attachment]:
    from bot.cogs.common import attachment_of

    return [a for a in message.attachments if attachment_of(a).looks_like_image]


class TypedLabelModal(discord.ui.Modal, title="Confirm a label"):
    """A label typed by the moderator (for labels outside the channel's set, or sets over 25 labels)."""

    label: discord.ui.TextInput[TypedLabelModal] = discord.ui.TextInput(label="Label", max_length=100)

    def __init__(self, view: ConfirmView) -> None:
        super().__init__(timeout=VIEW_TIMEOUT_S)
        self.confirm_view = view

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await self.confirm_view.confirm(interaction, str(self.label.value))


class LabelSelect(discord.ui.Select["ConfirmView"]):
    """The channel's labels to pick from."""

    def __init__(self, label_set: LabelSet) -> None:
        options = [
            discord.SelectOption(label=text[:100], value=str(index))
            for index, text in enumerate(label_set.texts[:MAX_SELECT_OPTIONS])
        ]
        super().__init__(
            placeholder="Choose the correct label", options=options, custom_id="plipbot:confirm:label"
        )
        self.label_set = label_set

    async def callback(self, interaction: discord.Interaction) -> None:
        assert self.view is not None
        await self.view.confirm(interaction, self.label_set.texts[int(self.values[0])])


class ModeratorView(discord.ui.View):
    """A view whose callbacks may raise PlipbotError (e.g. not a moderator): answered as one private line."""

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        from bot.app import send_ephemeral

        if isinstance(error, PlipbotError):
            await send_ephemeral(interaction, format_error(error.user_message))
            return
        log.error("learning view failed", exc_info=error)
        await send_ephemeral(interaction, format_error("Something went wrong; it has been logged."))


class ConfirmView(ModeratorView):
    """The private answer to "Confirm label…": a select of the channel's labels and a typed label."""

    def __init__(
        self, cog: LearningCog, target: ConfirmTarget, label_set: LabelSet, moderator_id: int
    ) -> None:
        super().__init__(timeout=VIEW_TIMEOUT_S)
        self.cog = cog
        self.target = target
        self.label_set = label_set
        self.moderator_id = moderator_id
        self.add_item(LabelSelect(label_set))

    @discord.ui.button(
        label="Type a label…", style=discord.ButtonStyle.secondary, custom_id="plipbot:confirm:typed"
    )
    async def typed(self, interaction: discord.Interaction, _: discord.ui.Button[ConfirmView]) -> None:
        await interaction.response.send_modal(TypedLabelModal(self))

    async def confirm(self, interaction: discord.Interaction, label: str) -> None:
        if interaction.user.id != self.moderator_id:
            await interaction.response.send_message(
                format_error("This is another moderator's."), ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        _, text = await asyncio.to_thread(
            self.cog.actions.confirm,
            self.target,
            label,
            label_set=self.label_set,
            confirmer_id=self.moderator_id,
        )
        await interaction.followup.send(text, ephemeral=True)


class ReviewView(ModeratorView):
    """Approve / reject buttons under one member's correction."""

    def __init__(self, cog: LearningCog, row: FeedbackRow) -> None:
        super().__init__(timeout=VIEW_TIMEOUT_S)
        self.cog = cog
        self.row = row
        approve = discord.ui.Button(
            label="Approve", style=discord.ButtonStyle.success, custom_id=f"plipbot:review:approve:{row.id}"
        )
        reject = discord.ui.Button(
            label="Reject", style=discord.ButtonStyle.danger, custom_id=f"plipbot:review:reject:{row.id}"
        )
        approve.callback = self._approve  # type: ignore[method-assign]
        reject.callback = self._reject  # type: ignore[method-assign]
        self.add_item(approve)
        self.add_item(reject)

    async def _approve(self, interaction: discord.Interaction) -> None:
        await self.cog.approve(interaction, self.row)

    async def _reject(self, interaction: discord.Interaction) -> None:
        await self.cog.reject(interaction, self.row)


class LearningCog(commands.Cog):
    """Confirmations, reviews, the learning switch and the label-set test."""

    def __init__(self, bot: PlipBot) -> None:
        self.bot = bot
        examples = bot.services.examples
        assert examples is not None, "the learning cog needs the examples store"
        self.actions = LearningActions(bot.services, examples)
        self.confirm_menu = app_commands.ContextMenu(
            name="Confirm label…", callback=self.confirm_from_message
        )
        bot.tree.add_command(self.confirm_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.confirm_menu.name, type=self.confirm_menu.type)

    # ------------------------------------------------------------------ Discord events

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Removed from a server (kicked, or the server deleted): its examples, switches and reviews go.

        Deleted posts and withdrawals reach the examples through the Container's list of user-data
        stores; a server's removal is a learning matter of its own (the examples were the server's).
        """
        try:
            removed = await asyncio.to_thread(self.actions.examples.forget_guild, guild.id)
        except PlipbotError as err:
            log.warning("removed from a server; examples not erased now (%s)", type(err).__name__)
            return
        log.info("removed from a server: %d confirmed example(s) erased", removed)

    # ------------------------------------------------------------------ helpers

    async def require_moderator(self, interaction: discord.Interaction) -> None:
        """Raise PermissionDeniedError unless the member may moderate this server."""
        await check_moderator(self.bot.services.guild_config, interaction)

    async def _label_set(self, guild_id: int, channel_id: int) -> LabelSet:
        config = await asyncio.to_thread(self.bot.services.guild_config.channel_config, guild_id, channel_id)
        return config.label_set

    async def _answered_post(self, answer: discord.Message) -> discord.Message | None:
        """The post an answer of the bot's replied to (or the post its thread was started from)."""
        reference = answer.reference
        try:
            if reference is not None and reference.message_id is not None:
                if isinstance(reference.resolved, discord.Message):
                    return reference.resolved
                channel = answer.channel
                if isinstance(channel, discord.abc.Messageable):
                    return await channel.fetch_message(reference.message_id)
            thread = answer.channel
            if isinstance(thread, discord.Thread) and isinstance(thread.parent, discord.TextChannel):
                return await thread.parent.fetch_message(thread.id)
        except discord.HTTPException:
            log.info("the post an answer refers to could not be fetched")
        return None

    async def target_of(self, message: discord.Message) -> ConfirmTarget | None:
        """The image a message shows, or the image an answer of the bot's is about."""
        source: discord.Message | None = message
        bot_user = self.bot.user
        if bot_user is not None and message.author.id == bot_user.id:  # its chart is not the image
            source = await self._answered_post(message)
        if source is None or source.guild is None:
            return None
        images = _image_attachments(source)
        if not images:
            return None
        # An answer covers one image; its header names the file.
        chosen = next((a for a in images if user_text(a.filename, 60) in message.content), images[0])
        return ConfirmTarget(
            guild_id=source.guild.id,
            channel_id=source.channel.id,
            message_id=source.id,
            attachment_id=chosen.id,
            url=chosen.url,
            filename=chosen.filename,
            poster_id=source.author.id,
            posted_at=source.created_at,
        )

    # ------------------------------------------------------------------ "Confirm label…"

    async def confirm_from_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        if interaction.guild_id is None or interaction.channel_id is None:
            await interaction.response.send_message(
                format_error("Use this in a server channel."), ephemeral=True
            )
            return
        await self.require_moderator(interaction)
        target = await self.target_of(message)
        if target is None:
            await interaction.response.send_message(format_error(NO_IMAGE), ephemeral=True)
            return
        label_set = await self._label_set(interaction.guild_id, interaction.channel_id)
        view = ConfirmView(self, target, label_set, interaction.user.id)
        more = len(label_set.texts) > MAX_SELECT_OPTIONS
        text = (
            f"Which label does {user_text(target.filename, 60)} show? Pick one of this channel's labels"
            + (f" (the first {MAX_SELECT_OPTIONS} are listed)" if more else "")
            + ", or type one. Confirmed examples stay in this server and adapt its answers."
        )
        await interaction.response.send_message(text, view=view, ephemeral=True)

    # ------------------------------------------------------------------ /labels review

    async def review(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await self.require_moderator(interaction)
        rows = await asyncio.to_thread(self.actions.pending_reviews, interaction.guild_id)
        if not rows:
            await interaction.response.send_message("No corrections are waiting for review.", ephemeral=True)
            return
        shown = rows[:MAX_REVIEWS_SHOWN]
        more = f" Showing {len(shown)} of {len(rows)}." if len(rows) > len(shown) else ""
        await interaction.response.send_message(
            f"{len(rows)} member correction(s) wait for review.{more} Approving one confirms it as an "
            "example (when its poster consented here or it is a corpus case).",
            ephemeral=True,
        )
        for row in shown:
            link = f"https://discord.com/channels/{row.guild_id}/{row.channel_id}/{row.answer_id}"
            await interaction.followup.send(
                LearningActions.describe_review(row, link), view=ReviewView(self, row), ephemeral=True
            )

    async def approve(self, interaction: discord.Interaction, row: FeedbackRow) -> None:
        await self.require_moderator(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        current = await asyncio.to_thread(self.actions.feedback_row, row.guild_id, row.id)
        if current is None or not current.correct_label:
            await interaction.followup.send(format_error("That correction no longer exists."), ephemeral=True)
            return
        answer = await self._fetch_answer(current)
        target = await self.target_of(answer) if answer is not None else None
        if target is None:
            await interaction.followup.send(
                format_error("The answered post or its image is gone; nothing to confirm."), ephemeral=True
            )
            return
        label_set = await self._label_set(row.guild_id, target.channel_id)
        kept, text = await asyncio.to_thread(
            self.actions.confirm,
            target,
            current.correct_label,
            label_set=label_set,
            confirmer_id=interaction.user.id,
            origin="feedback",
        )
        if kept:
            await asyncio.to_thread(
                self.actions.decide, current, ReviewDecision.APPROVED, interaction.user.id
            )
        await interaction.followup.send(text, ephemeral=True)

    async def reject(self, interaction: discord.Interaction, row: FeedbackRow) -> None:
        await self.require_moderator(interaction)
        await asyncio.to_thread(self.actions.decide, row, ReviewDecision.REJECTED, interaction.user.id)
        await interaction.response.send_message("Rejected; it will not be used.", ephemeral=True)

    async def _fetch_answer(self, row: FeedbackRow) -> discord.Message | None:
        channel: Any = self.bot.get_channel(row.channel_id)
        try:
            if channel is None:
                channel = await self.bot.fetch_channel(row.channel_id)
            return await channel.fetch_message(row.answer_id)  # type: ignore[no-any-return]
        except (discord.HTTPException, AttributeError):
            return None

    # ------------------------------------------------------------------ /labels learning, /labels test

    async def switch(self, interaction: discord.Interaction, enabled: bool, where: str) -> None:
        assert interaction.guild_id is not None
        await self.require_moderator(interaction)
        channel_id = interaction.channel_id if where == "channel" else None
        text = await asyncio.to_thread(
            self.actions.set_learning,
            interaction.guild_id,
            enabled,
            channel_id=channel_id,
            actor_id=interaction.user.id,
            where=where,
        )
        await interaction.response.send_message(text, ephemeral=True)

    async def test(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None and interaction.channel_id is not None
        await self.require_moderator(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        label_set = await self._label_set(interaction.guild_id, interaction.channel_id)
        try:
            reply = await asyncio.to_thread(
                self.actions.test, interaction.guild_id, interaction.channel_id, label_set
            )
        except PlipbotError as err:
            await interaction.followup.send(format_error(err.user_message), ephemeral=True)
            return
        await interaction.followup.send(reply.content, files=files_of(reply), ephemeral=True)
