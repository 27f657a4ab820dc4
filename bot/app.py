"""The discord.py client and its composition: `build_bot(container)` is all `plipbot run` calls.

The bot never runs the model: it sends tasks by name through the TaskClient (to Celery workers, or
to the in-process embedded worker when no broker is configured). Message content is a privileged
intent; the bot works without it, because Discord still delivers the content of messages that
mention the bot, and slash commands carry their options.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.reply import format_error
from bot.services import BotServices
from plipbot.errors import PlipbotError

if TYPE_CHECKING:
    from plipbot.composition import Container

log = logging.getLogger(__name__)

DRAIN_S = 5.0
"""On stop, how long handlers already running (an answer on its way to Discord) may take to finish."""


class PlipBot(commands.Bot):
    """The bot: cogs hold the handlers, `services` holds everything they call."""

    def __init__(self, services: BotServices) -> None:
        settings = services.settings.discord
        intents = discord.Intents.default()
        intents.message_content = settings.message_content_intent
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            guild_ready_timeout=settings.guild_ready_timeout_s,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.services = services
        self.tree.on_error = self._on_app_command_error  # type: ignore[method-assign]
        self._event_tasks: set[asyncio.Task[Any]] = set()

    def _schedule_event(
        self,
        coro: Callable[..., Coroutine[Any, Any, Any]],
        event_name: str,
        *args: Any,
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        # Every event handler (mentions, deletions, consent) runs as a task discord.py forgets; keeping
        # them lets `close` wait for an answer that is half sent instead of cutting its connection.
        task = super()._schedule_event(coro, event_name, *args, **kwargs)
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)
        return task

    async def close(self) -> None:
        """Stop (Ctrl-C, SIGTERM): let handlers in flight finish, up to DRAIN_S, then disconnect."""
        current = asyncio.current_task()
        pending = [task for task in self._event_tasks if task is not current and not task.done()]
        if pending:
            log.info("waiting for %d handler(s) in flight before closing", len(pending))
            await asyncio.wait(pending, timeout=DRAIN_S)
        await super().close()

    async def setup_hook(self) -> None:
        """Load the cogs and sync slash commands (to one test server when configured, else globally)."""
        from bot.cogs.admin import AdminCog
        from bot.cogs.answers import AnswersCog
        from bot.cogs.consent import ConsentCog
        from bot.cogs.learning import LearningCog
        from bot.cogs.privacy import PrivacyCog

        await self.add_cog(AnswersCog(self))
        await self.add_cog(AdminCog(self))
        await self.add_cog(ConsentCog(self))
        await self.add_cog(PrivacyCog(self))
        if self.services.examples is not None:
            await self.add_cog(LearningCog(self))
        guild_id = self.services.settings.discord.sync_guild_id
        if guild_id is not None:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_ready(self) -> None:
        log.info("connected as %s to %d server(s)", self.user, len(self.guilds))

    async def on_message(self, message: discord.Message) -> None:
        """No prefix commands: mentions are handled by the answers cog's listener."""

    async def _on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        cause = getattr(error, "original", error)
        if isinstance(cause, PlipbotError):
            text = format_error(cause.user_message)
        elif isinstance(error, app_commands.CheckFailure):
            text = format_error(str(error) or "You cannot use this command here.")
        else:
            log.error("slash command failed", exc_info=cause)
            text = format_error("Something went wrong; it has been logged.")
        await send_ephemeral(interaction, text)


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer privately, whether or not the interaction was already acknowledged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not send an error reply", exc_info=True)


def build_services(container: Container) -> BotServices:
    """The bot's services from the composition root's container (which builds and closes them)."""
    return BotServices(
        settings=container.settings,
        task_client=container.task_client,
        guild_config=container.guild_config,
        feedback=container.feedback,
        consent_ledger=container.consent_ledger,
        thumbnails=container.thumbnails,
        examples=container.examples_store,
    )


def build_bot(container: Container) -> PlipBot:
    """A ready-to-start bot (call `await bot.start(token)` or `bot.run(token)`)."""
    return PlipBot(build_services(container))
