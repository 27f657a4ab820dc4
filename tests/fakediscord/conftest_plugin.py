"""pytest fixtures for the fake Discord.

Enable with ``pytest_plugins = ["tests.fakediscord.conftest_plugin"]`` in ``tests/conftest.py`` (or in a
test module). ``fake_discord`` yields a running :class:`~tests.fakediscord.server.FakeDiscord` with
discord.py already pointed at it and ``PLIPBOT_DISCORD__API_BASE`` / ``PLIPBOT_DISCORD__GATEWAY_URL``
set; on teardown it restores discord.py's endpoints, stops the server and fails the test if the fake
itself crashed. Override ``fake_discord_world`` to serve other guilds, users or token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.discord_endpoints import current_endpoints
from tests.fakediscord.models import FakeWorld, default_world
from tests.fakediscord.server import FakeDiscord


@pytest.fixture
def fake_discord_world() -> FakeWorld:
    """The guilds, users and token the fake serves; override in a test module for other setups."""
    return default_world()


@pytest.fixture
def fake_discord(fake_discord_world: FakeWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    endpoints_before = current_endpoints()
    with FakeDiscord(fake_discord_world) as fake:
        monkeypatch.setenv("PLIPBOT_DISCORD__API_BASE", fake.api_base)
        monkeypatch.setenv("PLIPBOT_DISCORD__GATEWAY_URL", fake.gateway_url)
        yield fake
    assert current_endpoints() == endpoints_before, "discord.py endpoints were not restored"
    if fake.errors:
        pytest.fail("the fake Discord itself raised:\n" + "\n".join(fake.errors), pytrace=False)
