"""A fake Discord (REST, gateway, CDN) for end-to-end tests that run the real discord.py client.

Enable the fixtures with ``pytest_plugins = ["tests.fakediscord.conftest_plugin"]`` (root conftest or the
test module), then take ``fake_discord``; see :class:`tests.fakediscord.server.FakeDiscord` for the handle.
"""

from tests.fakediscord.models import FakeWorld, default_world
from tests.fakediscord.server import BotRaisedError, FakeDiscord, RecordedRequest, UploadedFile

__all__ = ["BotRaisedError", "FakeDiscord", "FakeWorld", "RecordedRequest", "UploadedFile", "default_world"]
