"""`/consent grant|withdraw|status` and ingestion of consenting posts in ingest-enabled channels.

Only posts made after a grant, in channels a moderator opened for ingest, are queued (the worker
checks the ledger again at upsert time). A first-time poster without consent gets one private
explanation by direct message: interactions are the only ephemeral replies Discord allows, and a
public reply would be a nag.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.common import attachment_of
from bot.cogs.privacy import PrivacyCog
from bot.ingest_notice import ingest_notice
from bot.reply import format_error
from bot.services import BUSY_MESSAGE
from ingest.consent_ledger import ConsentScope
from plipbot.errors import ServiceUnavailableError
from workers.case_contracts import IngestPostRequest, IngestPostResult, WithdrawRequest, WithdrawResult
from workers.contracts import ImageRef, TaskError

if TYPE_CHECKING:
    from bot.app import PlipBot

log = logging.getLogger(__name__)

INGEST_ATTEMPTS = 3
INGEST_WAIT_S = 120.0
INGEST_BACKOFF_S = 5.0

EXPLANATION = (
    "Hi! In this server's case channels, plipbot can add your image posts to a searchable corpus of "
    "similar cases, but only if you agree. Use `/consent grant` (this server only) or "
    "`/consent grant scope:shared` (also the shared corpus other servers can search). You can "
    "`/consent withdraw` at any time: every trace of your posts is then deleted. Nothing is collected "
    "until you consent."
)


class ConsentCog(commands.Cog):
    """Consent and corpus growth."""

    consent = app_commands.Group(
        name="consent", description="Whether your posts may join the case corpus", guild_only=True
    )

    def __init__(self, bot: PlipBot) -> None:
        self.bot = bot
        self._pending: set[asyncio.Task[None]] = set()

    @consent.command(name="grant", description="Let your future image posts in case channels join the corpus")
    async def grant(
        self, interaction: discord.Interaction, scope: Literal["server", "shared"] = "server"
    ) -> None:
        assert interaction.guild_id is not None
        ledger = self.bot.services.consent_ledger
        before = await asyncio.to_thread(ledger.current, interaction.user.id, interaction.guild_id)
        consent = await asyncio.to_thread(
            ledger.grant, interaction.user.id, interaction.guild_id, ConsentScope(scope)
        )
        narrowed = before is not None and before.scope is ConsentScope.SHARED
        if narrowed and consent.scope is ConsentScope.SERVER:
            # Narrowed: the cases already shared go back to this server only (searches elsewhere
            # stop showing them once the re-scope task has run).
            privacy = self.bot.get_cog("PrivacyCog")
            if isinstance(privacy, PrivacyCog):
                privacy.queue_rescope(interaction.guild_id, interaction.user.id)
        where = (
            "this server" if scope == "server" else "this server and, if the server shares, the shared corpus"
        )
        await interaction.response.send_message(
            f"Thank you. From now on ({discord.utils.format_dt(consent.granted_at)}), your image posts in "
            f"case channels can join {where}. Earlier posts are not collected. Undo: `/consent withdraw`.",
            ephemeral=True,
        )

    @consent.command(
        name="withdraw", description="Withdraw consent and delete every trace of your posts here"
    )
    async def withdraw(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        request = WithdrawRequest(
            user_id=interaction.user.id, guild_id=interaction.guild_id, actor_id=interaction.user.id
        )
        try:
            result = await asyncio.to_thread(self.bot.services.task_client.withdraw, request)
        except ServiceUnavailableError:
            await interaction.followup.send(format_error(BUSY_MESSAGE), ephemeral=True)
            return
        if isinstance(result, TaskError):
            await interaction.followup.send(format_error(result.message), ephemeral=True)
            return
        assert isinstance(result, WithdrawResult)
        await interaction.followup.send(
            f"Consent withdrawn. {result.deleted} case(s) from your posts were deleted, with their "
            "thumbnails; later posts will not be collected.",
            ephemeral=True,
        )

    @consent.command(name="status", description="Your current consent in this server")
    async def status(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        current = await asyncio.to_thread(
            self.bot.services.consent_ledger.current, interaction.user.id, interaction.guild_id
        )
        if current is None:
            text = "You have not consented here: none of your posts are collected."
        else:
            text = f"You consented ({current.scope.value}) on {discord.utils.format_dt(current.granted_at)}."
        await interaction.response.send_message(text, ephemeral=True)

    # ------------------------------------------------------------------ ingest listener

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.guild is None or not message.attachments:
            return
        services = self.bot.services
        config = await asyncio.to_thread(
            services.guild_config.channel_config, message.guild.id, message.channel.id
        )
        if not config.ingest_enabled:
            return
        images = [attachment_of(a) for a in message.attachments]
        images = [a for a in images if a.looks_like_image and services.check_attachment(a) is None]
        if not images:
            return
        allowed = await asyncio.to_thread(
            services.consent_ledger.allows, message.author.id, message.guild.id, message.created_at
        )
        if allowed is None:
            first = await asyncio.to_thread(
                services.guild_config.first_time_notice, message.guild.id, message.author.id
            )
            if first:
                try:
                    await message.author.send(EXPLANATION)
                except discord.HTTPException:
                    log.info("could not DM the consent explanation to %s", message.author.id)
            return
        caption = message.content
        if self.bot.user is not None:
            from bot.services import strip_mentions

            caption = strip_mentions(caption, self.bot.user.id)
        requests = []
        for image in images:
            request = IngestPostRequest(
                image=ImageRef.from_url(image.url),
                guild_id=message.guild.id,
                channel_id=message.channel.id,
                message_id=message.id,
                attachment_id=image.id,
                author_id=message.author.id,
                created_at=message.created_at,
                caption=caption[:4000],
                jump_link=message.jump_url,
                filename=image.filename,
            )
            requests.append(request)
        where = getattr(message.channel, "mention", "a case channel")
        task = asyncio.create_task(self._ingest_post(requests, message.author, where))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _ingest_post(
        self, requests: list[IngestPostRequest], author: discord.abc.User, where: str
    ) -> None:
        """Ingest a post's attachments, then tell the poster in one DM if any was held or rejected
        (the reason names the kind of problem, never the identifier)."""
        results = await asyncio.gather(*(self._ingest(request) for request in requests))
        outcomes = [(r.outcome, r.reason) for r in results if isinstance(r, IngestPostResult)]
        notice = ingest_notice(outcomes, where)
        if notice is None:
            return
        try:
            await author.send(notice)
        except discord.HTTPException:
            log.info("could not DM the ingest outcome to %s", author.id)

    async def _ingest(self, request: IngestPostRequest) -> object:
        """Queue one attachment and wait for its outcome (returned; None if never queued), resending
        after a lost message.

        A worker killed at the wrong instant can lose a message the Redis transport had already taken
        off the queue; ingest is idempotent (deterministic point ids), so resending is always safe.
        """
        client = self.bot.services.task_client
        for attempt in range(1, INGEST_ATTEMPTS + 1):
            try:
                result = await asyncio.to_thread(client.ingest_post, request, timeout_s=INGEST_WAIT_S)
            except ServiceUnavailableError:
                log.warning("ingest of message %s not queued: broker unavailable", request.message_id)
                result = None
            retry = result is None or (isinstance(result, TaskError) and result.retryable)
            if not retry or attempt == INGEST_ATTEMPTS:
                outcome = "unavailable" if result is None else getattr(result, "outcome", None) or result.code
                ids = (request.message_id, request.attachment_id)
                log.info("ingest message %s attachment %s: %s", *ids, outcome)  # the outcome, not its reason
                return result
            await asyncio.sleep(INGEST_BACKOFF_S * attempt)
