"""`plipbot run`: the Discord bot, with an in-process worker when no broker is configured."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from plipbot.composition import Container
from plipbot.errors import PlipbotError

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add `run` to the `plipbot` parser."""
    p = sub.add_parser("run", help="run the Discord bot (needs PLIPBOT_DISCORD__TOKEN)")
    p.add_argument("--model", help="registry name or local checkpoint path")
    p.add_argument("--data-dir", type=Path, dest="data_dir")
    p.set_defaults(func=run_bot)


async def serve(container: Container) -> None:
    """Connect and serve until cancelled; always closes the client, the task client and the stores."""
    import discord

    from bot.app import build_bot
    from bot.discord_endpoints import point_discord_at

    settings = container.settings
    token = settings.discord.token
    if not token:
        raise PlipbotError(
            "PLIPBOT_DISCORD__TOKEN is not set: create a bot in the Discord developer portal "
            "(see docs/operations.md)."
        )
    restore = point_discord_at(settings.discord.api_base, settings.discord.gateway_url)
    bot = build_bot(container)
    # SIGTERM is how docker, systemd and Kubernetes stop a service: close the gateway and the stores
    # like on Ctrl-C, rather than dying mid-answer (and, as PID 1 without an init, ignoring it).
    loop = asyncio.get_running_loop()
    closing: list[asyncio.Task[None]] = []
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows event loops
        loop.add_signal_handler(signal.SIGTERM, lambda: closing.append(loop.create_task(bot.close())))
    mode = f"broker {settings.broker_url}" if settings.broker_url else "embedded worker (no broker)"
    log.info("starting plipbot with %s", mode)
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure as err:
        raise PlipbotError("Discord refused the bot token (PLIPBOT_DISCORD__TOKEN); check it.") from err
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGTERM)
        restore()
        container.close()


def warm_start(container: Container) -> None:
    """Embedded mode: load the weights, label sets and store before connecting to Discord, so the
    first mention after the bot shows as online is answered at steady-state speed (with a broker,
    the workers warm themselves up before they take tasks)."""
    warm_up = getattr(container.task_client.transport, "warm_up", None)
    if warm_up is None:
        return
    seconds = warm_up()
    info = container.encoder.info
    print(
        f"plipbot: {info.identity.label} on {info.device}, {info.precision_reason}: ready in {seconds:.1f} s",
        flush=True,
    )


def run_bot(args: argparse.Namespace, container: Container) -> int:
    """`plipbot run`."""
    from plipbot.observability import setup_observability

    if not container.settings.discord.token:
        raise PlipbotError(
            "PLIPBOT_DISCORD__TOKEN is not set: create a bot in the Discord developer portal "
            "(see docs/operations.md)."
        )
    setup_observability(container.settings, component="bot")
    if container.settings.broker_url is None:
        print("plipbot: embedded mode (no PLIPBOT_BROKER_URL): the model runs in this process.")
        warm_start(container)
    try:
        asyncio.run(serve(container))
    except KeyboardInterrupt:
        return 0
    return 0
