"""Settings for the real bot against the fake Discord (tests/fakediscord), shared by the end-to-end tests
and bench/bot_bench.py so that they all point the bot at the fake the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plipbot.settings import Settings
from tests.embedded_settings import embedded_settings
from tests.fakediscord.server import FakeDiscord


def fake_discord_section(fake: FakeDiscord, **overrides: Any) -> dict[str, Any]:
    """The `discord` settings that point the bot at `fake`: its token and URLs, its guild for the command
    sync, no wait for guilds at start-up, no cool-downs, and the Message Content intent (posts that do
    not mention the bot are ingested); `overrides` add or replace keys."""
    return {
        "token": fake.token,
        "api_base": fake.api_base,
        "gateway_url": fake.gateway_url,
        "guild_ready_timeout_s": 0.05,
        "cooldown_user_s": 0,
        "cooldown_channel_s": 0,
        "sync_guild_id": int(fake.guild_id),
        "message_content_intent": True,
        **overrides,
    }


def settings_for_fake(fake: FakeDiscord, *, discord: dict[str, Any] | None = None, **fields: Any) -> Settings:
    """Settings with `fields` as given and the `discord` section of `fake_discord_section`, to which the
    keys of `discord` are added (or which they replace)."""
    return Settings(discord=fake_discord_section(fake, **(discord or {})), **fields)


def embedded_settings_for_fake(
    fake: FakeDiscord,
    checkpoint: Path,
    data_dir: Path,
    *,
    discord: dict[str, Any] | None = None,
    **fields: Any,
) -> Settings:
    """`embedded_settings` (tests/embedded_settings.py) with the bot pointed at `fake` as in
    `settings_for_fake`, and private URLs allowed (the fake CDN is on 127.0.0.1); `fields` add or
    replace Settings fields."""
    fields = {"workers": {"allow_private_urls": True}, **fields}
    section = fake_discord_section(fake, **(discord or {}))
    return embedded_settings(checkpoint, data_dir, discord=section, **fields)
