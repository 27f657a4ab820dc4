"""Privacy follows Discord: deleted messages, the bot's removal from a server, finished erasures.

- A message deleted on Discord (one, or a moderator's bulk purge) has its cases, thumbnails and
  whatever else is stored for it erased. Raw events, because the message is rarely in the cache.
- The bot removed from a server: the server's sharing is switched off and its cases re-scoped to the
  server, so nothing of it stays in the shared corpus.
- A periodic sweep finishes withdrawals that a store failure cut short, and tells each user by
  direct message once their erasure is done.

The work runs on the ingest queue (idempotent tasks); this cog only turns events into requests and
retries a request whose message was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from plipbot.errors import ServiceUnavailableError
from workers.contracts import TaskError
from workers.privacy_contracts import MAX_BULK_DELETE, ForgetMessagesRequest, RescopeRequest

if TYPE_CHECKING:
    from bot.app import PlipBot
    from ingest.consent_ledger import Erasure

log = logging.getLogger(__name__)

TASK_ATTEMPTS = 3
TASK_BACKOFF_S = 5.0
TASK_WAIT_S = 120.0


def erasure_done_text(erasure: Erasure) -> str:
    """The direct message a user gets when an erasure that could not finish at once has finished."""
    where = "in every server" if erasure.guild_id is None else "in the server where you withdrew"
    return (
        "Your data has now been deleted from plipbot: every case, thumbnail and other record of your "
        f"posts {where} is gone (your consent had already been withdrawn)."
    )


class PrivacyCog(commands.Cog):
    """Deleted messages, removal from a server, and the erasure sweep."""

    def __init__(self, bot: PlipBot) -> None:
        self.bot = bot
        self._pending: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        interval = self.bot.services.settings.discord.erasure_sweep_s
        if interval > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever(interval), name="plipbot-erasure-sweep")

    async def cog_unload(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for task in list(self._pending):
            task.cancel()

    # ------------------------------------------------------------------ Discord events

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            self._forget(payload.guild_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            self._forget(payload.guild_id, sorted(payload.message_ids))

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """Removed (kicked, or the server deleted): its cases leave the shared corpus."""
        services = self.bot.services
        actor = self.bot.user.id if self.bot.user is not None else 0
        await asyncio.to_thread(services.guild_config.set_sharing, guild.id, False, actor_id=actor)
        log.info("removed from guild %s: sharing off, re-scoping its cases", guild.id)
        self.queue_rescope(guild.id)

    # ------------------------------------------------------------------ requests

    def _forget(self, guild_id: int, message_ids: list[int]) -> None:
        client = self.bot.services.task_client
        for start in range(0, len(message_ids), MAX_BULK_DELETE):
            request = ForgetMessagesRequest(
                guild_id=guild_id, message_ids=message_ids[start : start + MAX_BULK_DELETE]
            )
            self._background("forget deleted messages", lambda r=request: client.forget_messages(r))

    def queue_rescope(self, guild_id: int, user_id: int | None = None) -> None:
        """Re-scope a server's cases (one author's) to the current state, in the background."""
        client = self.bot.services.task_client
        request = RescopeRequest(guild_id=guild_id, user_id=user_id)
        self._background("re-scope", lambda: client.rescope(request))

    def _background(self, what: str, call: Callable[[], Any]) -> None:
        task = asyncio.create_task(self._with_retries(what, call))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _with_retries(self, what: str, call: Callable[[], Any]) -> None:
        """Run a task call, resending after a lost message or a retryable failure (tasks are idempotent)."""
        for attempt in range(1, TASK_ATTEMPTS + 1):
            try:
                result = await asyncio.to_thread(call)
            except ServiceUnavailableError:
                result = None
            if not (result is None or (isinstance(result, TaskError) and result.retryable)):
                if isinstance(result, TaskError):
                    log.warning("%s failed: %s", what, result.code)
                return
            if attempt < TASK_ATTEMPTS:
                await asyncio.sleep(TASK_BACKOFF_S * attempt)
        log.warning("%s not done after %d attempts", what, TASK_ATTEMPTS)

    # ------------------------------------------------------------------ erasure sweep

    async def _sweep_forever(self, interval_s: float) -> None:
        await self.bot.wait_until_ready()
        while True:
            try:
                await self.sweep_once()
            except Exception:  # the loop must outlive one bad round
                log.exception("erasure sweep failed")
            await asyncio.sleep(interval_s)

    async def sweep_once(self) -> int:
        """Finish open erasures (on a worker), then tell every user whose erasure finished; returns how
        many users were told."""
        services = self.bot.services
        try:
            result = await asyncio.to_thread(services.task_client.sweep_erasures)
        except ServiceUnavailableError:
            result = None
        if result is None or isinstance(result, TaskError):
            log.info("erasure sweep not run now; notices of finished erasures still go out")
        told = 0
        for erasure in await asyncio.to_thread(services.consent_ledger.unnotified_erasures):
            if await self._tell(erasure):
                told += 1
        return told

    async def _tell(self, erasure: Erasure) -> bool:
        ledger = self.bot.services.consent_ledger
        try:
            user = self.bot.get_user(erasure.user_id) or await self.bot.fetch_user(erasure.user_id)
            await user.send(erasure_done_text(erasure))
        except discord.Forbidden:
            log.info("erasure %s done; the user does not accept direct messages", erasure.id)
        except discord.NotFound:  # the account was deleted: no later sweep can reach it either
            log.info("erasure %s done; the user's account no longer exists", erasure.id)
        except discord.HTTPException as err:
            log.warning("erasure %s done; the notice failed (%s), retried next sweep", erasure.id, err.status)
            return False
        await asyncio.to_thread(ledger.mark_notified, erasure.id)
        return True
