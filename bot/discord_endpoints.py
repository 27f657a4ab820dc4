"""Point discord.py at a Discord other than discord.com (a fake in tests, a proxy in deployment).

discord.py has no constructor argument for its endpoints. It reads two class attributes at call time:

- ``discord.http.Route.BASE``: the REST base URL. Every REST call builds its URL from it, including the
  interaction callbacks and followups sent through ``discord.webhook.async_`` (same ``Route`` class).
- ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``: the websocket URL a plain ``discord.Client`` or
  ``commands.Bot`` connects to; it never asks ``GET /gateway``. ``AutoShardedClient`` asks
  ``GET /gateway/bot`` instead and uses the ``url`` that comes back, so a fake must answer it too.
  discord.py adds ``?v=10&encoding=json&compress=zlib-stream`` (``zstd-stream`` when a zstd module is
  installed) itself.

Both are process-wide, so :func:`point_discord_at` returns a restorer: tests must undo the change or it
leaks into every later test. Attachment URLs need nothing here: discord.py downloads the ``url`` the
attachment payload carries. Avatar and emoji assets still use ``discord.asset.Asset.BASE``
(``https://cdn.discordapp.com``), which this module leaves alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_GATEWAY_URL",
    "DiscordEndpoints",
    "EndpointRestorer",
    "current_endpoints",
    "point_discord_at",
]

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"  # discord.py 2.7's DiscordWebSocket.DEFAULT_GATEWAY


@dataclass(frozen=True)
class DiscordEndpoints:
    """The REST base URL and gateway URL that discord.py uses right now."""

    api_base: str
    gateway_url: str


def current_endpoints() -> DiscordEndpoints:
    return DiscordEndpoints(api_base=Route.BASE, gateway_url=str(DiscordWebSocket.DEFAULT_GATEWAY))


class EndpointRestorer:
    """Puts back the endpoints that were in place before :func:`point_discord_at`.

    Call it, or use the return value of :func:`point_discord_at` as a context manager. Restoring twice is
    harmless; restoring after someone else changed the endpoints again puts the old ones back anyway.
    """

    def __init__(self, previous_api_base: str, previous_gateway: yarl.URL) -> None:
        self._previous_api_base = previous_api_base
        self._previous_gateway = previous_gateway

    @property
    def previous(self) -> DiscordEndpoints:
        return DiscordEndpoints(api_base=self._previous_api_base, gateway_url=str(self._previous_gateway))

    def __call__(self) -> None:
        Route.BASE = self._previous_api_base
        DiscordWebSocket.DEFAULT_GATEWAY = self._previous_gateway

    def __enter__(self) -> EndpointRestorer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self()


def point_discord_at(api_base: str | None = None, gateway_url: str | None = None) -> EndpointRestorer:
    """Make discord.py send REST calls to ``api_base`` and open its gateway at ``gateway_url``.

    ``api_base`` includes the version (``https://discord.com/api/v10``); a trailing slash is dropped.
    ``gateway_url`` is a ``ws://`` or ``wss://`` URL without query (discord.py adds its own). ``None``
    leaves that endpoint unchanged. Returns a restorer (callable, or context manager) for the previous
    endpoints; the change applies at once, not on ``__enter__``.
    """
    restorer = EndpointRestorer(Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    new_api_base = Route.BASE if api_base is None else _checked_api_base(api_base)
    new_gateway = DiscordWebSocket.DEFAULT_GATEWAY if gateway_url is None else _checked_gateway(gateway_url)
    Route.BASE = new_api_base
    DiscordWebSocket.DEFAULT_GATEWAY = new_gateway
    return restorer


def _checked_api_base(api_base: str) -> str:
    url = yarl.URL(api_base)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"Discord API base must be an http(s) URL with a host, got {api_base!r}")
    if url.query_string or url.fragment:
        raise ValueError(f"Discord API base must not carry a query or fragment, got {api_base!r}")
    return api_base.rstrip("/")


def _checked_gateway(gateway_url: str) -> yarl.URL:
    url = yarl.URL(gateway_url)
    if url.scheme not in ("ws", "wss") or not url.host:
        raise ValueError(f"Discord gateway URL must be a ws(s) URL with a host, got {gateway_url!r}")
    if url.query_string:
        raise ValueError(
            f"Discord gateway URL must not carry a query (discord.py adds v/encoding), got {gateway_url!r}"
        )
    return url
