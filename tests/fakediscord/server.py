"""A fake Discord (REST API v10, gateway websocket, attachment CDN) for end-to-end tests of discord.py bots.

One aiohttp application on 127.0.0.1 (a free port) serves

- ``/api/v10/...``: the REST routes a discord.py bot uses (login, app-command sync, messages with
  uploads, threads, interaction callbacks, followups). Every call is recorded, known or not; unknown
  routes answer 404 so a test can see what the bot tried.
- ``/gateway`` (and ``/gateway/resume``, the ``resume_gateway_url``): HELLO, IDENTIFY -> READY and one
  GUILD_CREATE per guild, heartbeat ACKs, RESUME with replay, REQUEST_GUILD_MEMBERS, and
  ``zlib-stream`` transport compression (discord.py asks for it; other compressions get plain text
  frames, which discord.py also accepts).
- ``/cdn/attachments/...`` and ``/media/attachments/...``: bytes of attachments registered by tests or
  uploaded by the bot.

The server runs on its own event loop in a background thread (:meth:`FakeDiscord.start`), so the bot
under test can run on the test's loop (``asyncio.run``) without sharing anything but sockets. The
:class:`FakeDiscord` object is the handle tests use: state queries and ``dispatch`` are thread-safe, and
the ``wait_for_*`` coroutines can be awaited from any event loop.

Behaviour copied from Discord because bots depend on it: JSON responses carry exactly
``Content-Type: application/json`` (discord.py parses nothing else); REST calls need ``Authorization: Bot
<token>`` (webhooks and interaction callbacks do not); an interaction must be acknowledged within 3 s
(``interaction_ack_deadline_s``; 10062 after that) and only once (40060); a followup needs an
acknowledged interaction, and the first followup after a deferred (type 5) response fills in the
"thinking" message, inheriting its ephemeral flag; messages without content, embeds, files, components
or poll are refused (50006); content over 2000 characters or files over the upload limit are refused;
the bot's own non-ephemeral messages come back as MESSAGE_CREATE; sessions without the MESSAGE_CONTENT
intent receive guild messages that do not mention the bot with empty content, embeds, attachments and
components.
"""

# The wait_* coroutines take timeout= on purpose: one call per wait reads better in tests.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
import logging
import re
import secrets
import threading
import time
import traceback
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import aiohttp
import discord
from aiohttp import web

from bot.discord_endpoints import EndpointRestorer, point_discord_at
from tests.fakediscord import models
from tests.fakediscord.models import FakeWorld, Payload

__all__ = [
    "BotRaisedError",
    "FakeDiscord",
    "GatewayConnectionInfo",
    "RecordedRequest",
    "UploadedFile",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"
RESUME_GATEWAY_PATH = "/gateway/resume"
MAX_CONTENT_LENGTH = 2000
MAX_EMBEDS = 10
MAX_FILES = 10
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_MESSAGE_CONTENT = 1 << 15
_ALLOWED_SEND_FLAGS = (
    4 | 64 | 4096 | 32768
)  # suppress embeds, ephemeral, suppress notifications, components v2
_REPLAYED_EVENTS_KEPT = 1000
_POLL_INTERVAL_S = 0.02
_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


class UploadedFile(NamedTuple):
    """One ``files[n]`` part of a multipart request, as sent (discord.py always says octet-stream)."""

    filename: str
    data: bytes
    content_type: str


@dataclass
class RecordedRequest:
    """A REST call the fake received. ``json`` is the JSON body, or ``payload_json`` of a multipart body.

    ``path`` is relative to the API base (``/channels/1/messages``); ``route`` names the fake's route
    (``create_message``, ``interaction_callback``...) or is ``None`` for routes the fake does not know;
    ``params`` holds the route's path parameters. ``status`` and ``response`` are what the fake answered.
    """

    index: int
    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[UploadedFile]
    headers: dict[str, str]
    route: str | None
    params: dict[str, str]
    status: int = 0
    response: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def summary(self) -> str:
        name = self.route or "UNKNOWN ROUTE"
        return f"#{self.index} {self.method} {self.path} -> {self.status} ({name})"


@dataclass(frozen=True)
class GatewayConnectionInfo:
    """One websocket connection to the fake gateway: the path and query the client used."""

    path: str
    query: dict[str, str]


class BotRaisedError(AssertionError):
    """discord.py logged an exception from the bot (an event handler, a command, a view) during a test."""


class _DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Payload | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> Payload:
        body: Payload = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def _form_error(field_name: str, code: str, message: str) -> _DiscordError:
    return _DiscordError(
        400, 50035, "Invalid Form Body", {field_name: {"_errors": [{"code": code, "message": message}]}}
    )


@dataclass
class _Reply:
    status: int
    body: Any


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Callable[[RecordedRequest], Awaitable[Any]]
    needs_bot_auth: bool


@dataclass
class _Blob:
    data: bytes
    filename: str
    content_type: str


@dataclass
class _InteractionState:
    payload: Payload
    dispatched_at: float = field(default_factory=time.monotonic)
    callback_type: int | None = None
    original_message_id: str | None = None
    awaiting_first_followup: bool = False
    modal: Payload | None = None

    @property
    def interaction_id(self) -> str:
        return self.payload["id"]

    @property
    def token(self) -> str:
        return self.payload["token"]

    @property
    def channel_id(self) -> str:
        return self.payload["channel_id"]

    @property
    def user(self) -> Payload:
        return self.payload["member"]["user"] if "member" in self.payload else self.payload["user"]

    @property
    def source_message_id(self) -> str | None:
        message = self.payload.get("message")
        return None if message is None else message["id"]


@dataclass(eq=False)
class _Waiter:
    check: Callable[[], Any]
    resolve: Callable[[Any], None]
    fail: Callable[[BaseException], None]


class _GatewayConnection:
    """One websocket; sends are serialised because zlib-stream frames must go out in compression order."""

    def __init__(self, ws: web.WebSocketResponse, *, zlib_stream: bool) -> None:
        self.ws = ws
        self._compressor = zlib.compressobj() if zlib_stream else None
        self._send_lock = asyncio.Lock()

    async def send(self, payload: Payload) -> bool:
        text = json.dumps(payload, separators=(",", ":"))
        async with self._send_lock:
            if self.ws.closed:
                return False
            try:
                if self._compressor is not None:
                    frame = self._compressor.compress(text.encode()) + self._compressor.flush(
                        zlib.Z_SYNC_FLUSH
                    )
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=reason.encode())


@dataclass(eq=False)
class _GatewaySession:
    session_id: str
    intents: int
    identify: Payload
    connection: _GatewayConnection | None
    sequence: int = 0
    alive: bool = True
    sent: list[tuple[int, str, Payload]] = field(default_factory=list)


class FakeDiscord:
    """The fake Discord and the handle tests drive it with.

    Typical use (the ``fake_discord`` fixture does the first two lines)::

        with FakeDiscord() as fake:          # starts the server, points discord.py at it, undoes both
            async with fake.connected(client):   # client.start(token), waits for on_ready, closes
                message = fake.post_user_message("look", mention_bot=True, attachments=[image])
                sent = await fake.wait_for_message(fake.channel_id)
    """

    def __init__(
        self,
        world: FakeWorld | None = None,
        *,
        heartbeat_interval_ms: int = 41_250,
        echo_bot_messages: bool = True,
        enforce_message_content_intent: bool = True,
        transport_compression: bool = True,
        attachment_size_limit: int = models.DEFAULT_ATTACHMENT_SIZE_LIMIT,
        interaction_ack_deadline_s: float | None = 3.0,
    ) -> None:
        self.world = world or models.default_world()
        self.interaction_ack_deadline_s = interaction_ack_deadline_s
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.echo_bot_messages = echo_bot_messages
        self.enforce_message_content_intent = enforce_message_content_intent
        self.transport_compression = transport_compression
        self.attachment_size_limit = attachment_size_limit

        self._lock = threading.RLock()
        self._users: dict[str, Payload] = {}
        self._guilds: dict[str, Payload] = {}
        self._channels: dict[str, Payload] = {}
        self._messages: dict[str, Payload] = {}
        self._dm_channels: dict[str, Payload] = {}  # by recipient user id
        self._blobs: dict[str, _Blob] = {}
        self._interactions: dict[str, _InteractionState] = {}
        self._interactions_by_token: dict[str, _InteractionState] = {}
        self._commands: dict[str | None, list[Payload]] = {}
        self._requests: list[RecordedRequest] = []
        self._response_delays: dict[str, float] = {}  # route name -> seconds before answering
        self._errors: list[str] = []
        self._client_errors: list[BaseException] = []
        self._cdn_downloads: list[str] = []
        self._gateway_connections: list[GatewayConnectionInfo] = []
        self._gateway_received: list[Payload] = []
        self._sessions: dict[str, _GatewaySession] = {}
        self._ready_count = 0
        self._resume_count = 0
        self._waiters: list[_Waiter] = []
        self._load_world(self.world)

        self._routes = self._build_routes()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._connections: set[_GatewayConnection] = set()
        self._port: int | None = None
        self._restore_endpoints: EndpointRestorer | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> FakeDiscord:
        """Start the server on a free port in a background thread; returns once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the fake Discord is already running")
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_server())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._stop_server())
                pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="fake-discord", daemon=True)
        self._thread.start()
        if not started.wait(timeout=10):
            raise RuntimeError("the fake Discord did not start within 10 s")
        if failure:
            self._thread = None
            raise RuntimeError("the fake Discord failed to start") from failure[0]
        return self

    def stop(self) -> None:
        """Close gateway connections, stop the server and join its thread. Safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> FakeDiscord:
        self.start()
        self._restore_endpoints = point_discord_at(self.api_base, self.gateway_url)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._restore_endpoints is not None:
            self._restore_endpoints()
            self._restore_endpoints = None
        self.stop()

    async def _start_server(self) -> None:
        app = web.Application(client_max_size=max(64 * 1024 * 1024, 12 * self.attachment_size_limit))
        app.router.add_route("GET", GATEWAY_PATH, self._gateway_entry)
        app.router.add_route("GET", RESUME_GATEWAY_PATH, self._gateway_entry)
        app.router.add_route(
            "GET", "/cdn/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn_entry
        )
        app.router.add_route(
            "GET", "/media/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn_entry
        )
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._api_entry)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _stop_server(self) -> None:
        for connection in list(self._connections):
            await connection.close(1001, "fake Discord is shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- addresses and the world ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("the fake Discord is not running; call start() first")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``PLIPBOT_DISCORD__API_BASE`` should be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``PLIPBOT_DISCORD__GATEWAY_URL`` should be set to."""
        return self.base_url.replace("http://", "ws://", 1) + GATEWAY_PATH

    @property
    def cdn_base(self) -> str:
        return self.base_url + "/cdn"

    @property
    def token(self) -> str:
        return self.world.token

    @property
    def application_id(self) -> str:
        return self.world.application_id

    @property
    def bot_user(self) -> Payload:
        return copy.deepcopy(self.world.bot_user)

    @property
    def bot_user_id(self) -> str:
        return self.world.bot_user["id"]

    @property
    def default_user(self) -> Payload:
        """The human who writes messages and clicks buttons unless a helper is told otherwise."""
        users = self.world.users or [self.world.owner]
        return copy.deepcopy(users[-1])

    @property
    def guild(self) -> Payload:
        with self._lock:
            return copy.deepcopy(self._guilds[self.world.guilds[0]["id"]])

    @property
    def guild_id(self) -> str:
        return self.world.guilds[0]["id"]

    @property
    def channel(self) -> Payload:
        """The first text channel of the first guild (``#cases`` in the default world)."""
        return self.get_channel(self.channel_id)

    @property
    def channel_id(self) -> str:
        first_guild = self.world.guilds[0]
        return next(c["id"] for c in first_guild["channels"] if c["type"] == models.GUILD_TEXT)

    def get_channel(self, channel_id: str) -> Payload:
        with self._lock:
            return copy.deepcopy(self._channel_or_raise(str(channel_id)))

    def channel_named(self, name: str, guild_id: str | None = None) -> Payload:
        with self._lock:
            for channel in self._channels.values():
                if channel.get("name") == name and (guild_id is None or channel.get("guild_id") == guild_id):
                    return copy.deepcopy(channel)
        raise LookupError(f"no channel named {name!r}")

    def member(self, user_id: str, guild_id: str | None = None) -> Payload:
        with self._lock:
            found = self._member_of(guild_id or self.guild_id, str(user_id))
            if found is None:
                raise LookupError(f"user {user_id} is not a member of guild {guild_id or self.guild_id}")
            return copy.deepcopy(found)

    def _load_world(self, world: FakeWorld) -> None:
        for user in [world.bot_user, world.owner, *world.users]:
            self._users[user["id"]] = copy.deepcopy(user)
        for guild in world.guilds:
            stored = copy.deepcopy(guild)
            self._guilds[stored["id"]] = stored
            for channel in [*stored.get("channels", []), *stored.get("threads", [])]:
                channel["guild_id"] = stored["id"]
                self._channels[channel["id"]] = channel
            for member in stored.get("members", []):
                self._users.setdefault(member["user"]["id"], copy.deepcopy(member["user"]))

    # --- recorded state ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every REST call so far (answered ones), in the order answered."""
        with self._lock:
            return list(self._requests)

    @property
    def unknown_requests(self) -> list[RecordedRequest]:
        """REST calls to routes the fake does not implement (answered 404)."""
        return [request for request in self.requests if request.route is None]

    @property
    def errors(self) -> list[str]:
        """Tracebacks of exceptions inside the fake itself (a bug in the fake, or a payload it can't read)."""
        with self._lock:
            return list(self._errors)

    @property
    def client_errors(self) -> list[BaseException]:
        """Exceptions discord.py logged for the bot while inside :meth:`connected`."""
        with self._lock:
            return list(self._client_errors)

    @property
    def cdn_downloads(self) -> list[str]:
        """Attachment ids fetched from the CDN, in order."""
        with self._lock:
            return list(self._cdn_downloads)

    @property
    def gateway_connections(self) -> list[GatewayConnectionInfo]:
        with self._lock:
            return list(self._gateway_connections)

    @property
    def gateway_received(self) -> list[Payload]:
        """Every gateway payload the clients sent (heartbeats, IDENTIFY, RESUME...), in order."""
        with self._lock:
            return copy.deepcopy(self._gateway_received)

    @property
    def identify_payloads(self) -> list[Payload]:
        return [payload["d"] for payload in self.gateway_received if payload.get("op") == 2]

    def delay_responses(self, route_name: str, seconds: float) -> None:
        """Answer requests of `route_name` (e.g. "create_message") `seconds` after recording them, as a
        slow Discord would: lets a test stop the bot while its request is in flight."""
        with self._lock:
            self._response_delays[route_name] = seconds

    def mark(self) -> int:
        """A position in :attr:`requests`; pass it as ``after=`` to wait only for later calls."""
        with self._lock:
            return len(self._requests)

    def requests_to(self, route: str, *, after: int = 0, **params: str) -> list[RecordedRequest]:
        """Recorded calls to the named route whose path parameters equal ``params``."""
        wanted = {key: str(value) for key, value in params.items()}
        return [
            request
            for request in self.requests[after:]
            if request.route == route and all(request.params.get(k) == v for k, v in wanted.items())
        ]

    def sent_messages(self, channel_id: str | None = None, *, after: int = 0) -> list[RecordedRequest]:
        """``POST /channels/{id}/messages`` calls that created a message (in ``channel_id`` if given)."""
        params = {} if channel_id is None else {"channel_id": str(channel_id)}
        return [r for r in self.requests_to("create_message", after=after, **params) if r.ok]

    def interaction_responses(self, interaction_id: str) -> list[RecordedRequest]:
        """``POST /interactions/{id}/{token}/callback`` calls for that interaction (accepted or not)."""
        return self.requests_to("interaction_callback", interaction_id=str(interaction_id))

    def followups(self, token: str) -> list[RecordedRequest]:
        """``POST /webhooks/{app}/{token}`` calls (followup messages) for the interaction with ``token``."""
        return self.requests_to("create_followup", token=token)

    def messages_in(self, channel_id: str) -> list[Payload]:
        """Messages now in a channel, oldest first: dispatched user messages and everything the bot posted
        (interaction responses and ephemeral ones included)."""
        with self._lock:
            found = [m for m in self._messages.values() if m["channel_id"] == str(channel_id)]
            return copy.deepcopy(sorted(found, key=lambda m: int(m["id"])))

    def message(self, message_id: str) -> Payload:
        with self._lock:
            return copy.deepcopy(self._message_or_raise(str(message_id)))

    def original_response(self, interaction_id: str) -> Payload | None:
        """The message ``@original`` refers to for that interaction, as it is now."""
        with self._lock:
            state = self._interactions.get(str(interaction_id))
            if state is None or state.original_message_id is None:
                return None
            message = self._messages.get(state.original_message_id)
            return None if message is None else copy.deepcopy(message)

    def modal_sent(self, interaction_id: str) -> Payload | None:
        """The modal (callback type 9 ``data``) the bot opened for that interaction, if any."""
        with self._lock:
            state = self._interactions.get(str(interaction_id))
            return None if state is None or state.modal is None else copy.deepcopy(state.modal)

    def synced_commands(self, guild_id: str | None = None) -> list[Payload]:
        """Application commands as last synced: global ones, or those of ``guild_id``."""
        with self._lock:
            return copy.deepcopy(self._commands.get(None if guild_id is None else str(guild_id), []))

    def attachment_bytes(self, attachment: Payload | str) -> bytes:
        """The bytes behind an attachment payload (or its id) that the CDN serves."""
        attachment_id = attachment if isinstance(attachment, str) else attachment["id"]
        with self._lock:
            return self._blobs[str(attachment_id)].data

    def describe_requests(self, last: int = 25) -> str:
        lines = [request.summary() for request in self.requests[-last:]]
        return "recent REST calls to the fake:\n  " + ("\n  ".join(lines) if lines else "(none)")

    # --- waiting -------------------------------------------------------------------------------------

    async def wait_until(self, check: Callable[[], T | None], *, timeout: float = 5.0, what: str = "") -> T:
        """Wait until ``check()`` returns non-None; returns that value.

        ``check`` runs under the fake's lock after every change of the fake's state and every 20 ms, so
        it may also look at state the bot keeps. Awaitable from any event loop. Fails fast with
        :class:`BotRaisedError` when discord.py logs an exception from the bot inside :meth:`connected`.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(value: Any, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(value)

        def resolve(value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the waiting loop is gone
                loop.call_soon_threadsafe(settle, value, None)

        def fail(exc: BaseException) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, None, exc)

        waiter = _Waiter(check, resolve, fail)
        with self._lock:
            if self._client_errors:
                raise self._bot_raised()
            value = check()
            if value is not None:
                return value
            self._waiters.append(waiter)
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._timed_out(what, timeout)
                done, _ = await asyncio.wait({future}, timeout=min(_POLL_INTERVAL_S, remaining))
                if done:
                    return future.result()
                with self._lock:  # also poll: check() may look at state outside the fake
                    value = check()
                if value is not None:
                    return value
        finally:
            future.cancel()
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def wait_until_blocking(
        self, check: Callable[[], T | None], *, timeout: float = 5.0, what: str = ""
    ) -> T:
        """:meth:`wait_until` for code without an event loop (a bot running in another thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("blocking wait inside an event loop would freeze the bot; await wait_until")
        done = threading.Event()
        outcome: list[Any] = []

        def resolve(value: Any) -> None:
            outcome.append((value, None))
            done.set()

        def fail(exc: BaseException) -> None:
            outcome.append((None, exc))
            done.set()

        waiter = _Waiter(check, resolve, fail)
        with self._lock:
            value = check()
            if value is not None:
                return value
            self._waiters.append(waiter)
        deadline = time.monotonic() + timeout
        try:
            while not done.wait(min(_POLL_INTERVAL_S, max(deadline - time.monotonic(), 0))):
                with self._lock:
                    value = check()
                if value is not None:
                    return value
                if time.monotonic() >= deadline:
                    raise self._timed_out(what, timeout)
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        value, exc = outcome[0]
        if exc is not None:
            raise exc
        return value

    def _timed_out(self, what: str, timeout: float) -> TimeoutError:
        return TimeoutError(
            f"fake Discord: nothing matched {what or 'the condition'} within {timeout:.1f} s\n"
            + self.describe_requests()
        )

    def _notify_locked(self) -> None:
        for waiter in list(self._waiters):
            try:
                value = waiter.check()
            except Exception as exc:
                self._waiters.remove(waiter)
                waiter.fail(exc)
                continue
            if value is not None:
                self._waiters.remove(waiter)
                waiter.resolve(value)

    def _request_check(
        self, predicate: Callable[[RecordedRequest], bool] | None, route: str | None, after: int
    ) -> Callable[[], RecordedRequest | None]:
        def check() -> RecordedRequest | None:
            for request in self._requests[after:]:
                if (route is None or request.route == route) and (predicate is None or predicate(request)):
                    return request
            return None

        return check

    async def wait_for_request(
        self,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        *,
        route: str | None = None,
        after: int = 0,
        timeout: float = 5.0,
    ) -> RecordedRequest:
        """The first recorded call (from index ``after``) to ``route`` matching ``predicate``; waits for it.

        Earlier calls count too, so a call that finished before the wait started is not missed; take
        :meth:`mark` before acting to ignore what came before.
        """
        check = self._request_check(predicate, route, after)
        return await self.wait_until(check, timeout=timeout, what=f"a request to route {route or 'any'}")

    def wait_for_request_blocking(
        self,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        *,
        route: str | None = None,
        after: int = 0,
        timeout: float = 5.0,
    ) -> RecordedRequest:
        check = self._request_check(predicate, route, after)
        return self.wait_until_blocking(check, timeout=timeout, what=f"a request to route {route or 'any'}")

    async def wait_for_message(
        self, channel_id: str | None = None, *, after: int = 0, timeout: float = 5.0
    ) -> RecordedRequest:
        """The first successful ``POST /channels/{id}/messages`` (in ``channel_id`` if given)."""

        def matches(request: RecordedRequest) -> bool:
            return request.ok and (channel_id is None or request.params["channel_id"] == str(channel_id))

        return await self.wait_for_request(matches, route="create_message", after=after, timeout=timeout)

    async def wait_for_interaction_response(
        self, interaction_id: str, *, timeout: float = 5.0
    ) -> RecordedRequest:
        return await self.wait_for_request(
            lambda request: request.params["interaction_id"] == str(interaction_id),
            route="interaction_callback",
            timeout=timeout,
        )

    async def wait_for_followup(self, token: str, *, after: int = 0, timeout: float = 5.0) -> RecordedRequest:
        return await self.wait_for_request(
            lambda request: request.params["token"] == token,
            route="create_followup",
            after=after,
            timeout=timeout,
        )

    async def wait_for_ready(self, *, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` clients identified and got READY plus every GUILD_CREATE.

        discord.py fires ``on_ready`` later: ``guild_ready_timeout`` (2 s by default) after the last
        GUILD_CREATE, so bots under test should pass e.g. ``guild_ready_timeout=0.05``.
        """

        def check() -> bool | None:
            return True if self._ready_count >= count else None

        await self.wait_until(check, timeout=timeout, what=f"{count} identified gateway session(s)")

    async def wait_for_resume(self, *, count: int = 1, timeout: float = 5.0) -> None:
        def check() -> bool | None:
            return True if self._resume_count >= count else None

        await self.wait_until(check, timeout=timeout, what=f"{count} gateway RESUME(s)")

    # --- running a client against the fake -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connected(
        self,
        client: discord.Client,
        *,
        ready_timeout: float = 10.0,
        settle_timeout: float = 2.0,
        fail_on_client_errors: bool = True,
    ) -> AsyncIterator[discord.Client]:
        """Run ``client.start(token)`` on the current loop until the block ends; enter once on_ready fired.

        On exit, the bot's running event handlers, app-command invocations and view/modal callbacks get
        up to ``settle_timeout`` seconds to finish (the fake records a request before its response
        reaches the bot, so a test that saw the request may otherwise close the client under the
        handler); then the client is closed and its task awaited. With ``fail_on_client_errors``,
        exceptions discord.py logs for the bot (``Ignoring exception in ...``) make waits fail at once
        and are raised as :class:`BotRaisedError` when the block ends.
        """
        capture = _ClientErrorCapture(self) if fail_on_client_errors else None
        if capture is not None:
            logging.getLogger("discord").addHandler(capture)
        client_task = asyncio.create_task(client.start(self.token), name="fake-discord-client")
        try:
            await self._wait_client_ready(client, client_task, ready_timeout)
            yield client
            await _settle_bot_tasks(settle_timeout)
        finally:
            if capture is not None:  # what fails after this point fails because the client is closing
                logging.getLogger("discord").removeHandler(capture)
            await client.close()
            try:
                await asyncio.wait_for(client_task, timeout=5)
            except TimeoutError:
                client_task.cancel()
            except (discord.DiscordException, aiohttp.ClientError, OSError):
                log.debug("client task ended with an error after close", exc_info=True)
        if capture is not None and self._client_errors:
            raise self._bot_raised()

    async def _wait_client_ready(
        self, client: discord.Client, client_task: asyncio.Task[None], timeout: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not client.is_ready():
            if client_task.done():
                client_task.result()  # raises the login/connect error
                raise RuntimeError("the client stopped before it became ready")
            if loop.time() > deadline:
                raise TimeoutError(
                    f"client not ready within {timeout:.1f} s (guild_ready_timeout is "
                    f"{client._connection.guild_ready_timeout} s)\n" + self.describe_requests()
                )
            await asyncio.sleep(0.01)

    def _record_client_error(self, error: BaseException) -> None:
        with self._lock:
            self._client_errors.append(error)
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.fail(self._bot_raised())

    def _bot_raised(self) -> BotRaisedError:
        first = self._client_errors[0]
        error = BotRaisedError(
            f"the bot raised {len(self._client_errors)} exception(s); first: {first!r}\n"
            + "".join(traceback.format_exception(first))
        )
        error.__cause__ = first
        return error

    # --- driving the bot -----------------------------------------------------------------------------

    def dispatch(self, event: str, payload: Payload, *, timeout: float = 5.0) -> None:
        """Send a gateway DISPATCH (``op 0``, ``t=event``) to every live session and wait until it is sent.

        The fake also learns from what it dispatches: MESSAGE_CREATE stores the message (so replies,
        threads and ``GET`` of it work), INTERACTION_CREATE registers the interaction and its token,
        CHANNEL_CREATE/THREAD_CREATE add the channel. Raises if no client has identified.
        """
        if self._loop is None or self._thread is None:
            raise RuntimeError("the fake Discord is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("dispatch() from the fake's own thread would deadlock")
        if not any(session.alive for session in list(self._sessions.values())):
            raise RuntimeError(f"no client is connected to the fake gateway; cannot dispatch {event}")
        with self._lock:
            self._learn_from_dispatch(event, payload)
        future = asyncio.run_coroutine_threadsafe(
            self._broadcast(event, payload, require_session=True), self._loop
        )
        future.result(timeout)

    def delete_user_messages(self, messages: Sequence[Payload], *, timeout: float = 5.0) -> None:
        """A person deletes messages: one is MESSAGE_DELETE, several are one MESSAGE_DELETE_BULK (what a
        moderator's purge sends). All must be in one channel; the bot may never have cached them."""
        if not messages:
            raise ValueError("nothing to delete")
        channel_id = messages[0]["channel_id"]
        if any(message["channel_id"] != channel_id for message in messages):
            raise ValueError("a bulk delete covers one channel")
        guild_id = self.get_channel(channel_id).get("guild_id")
        ids = [message["id"] for message in messages]
        with self._lock:
            for message_id in ids:
                self._messages.pop(message_id, None)
        if len(ids) == 1:
            payload: Payload = {"id": ids[0], "channel_id": channel_id}
            event = "MESSAGE_DELETE"
        else:
            payload, event = {"ids": ids, "channel_id": channel_id}, "MESSAGE_DELETE_BULK"
        if guild_id:
            payload["guild_id"] = guild_id
        self.dispatch(event, payload, timeout=timeout)

    def remove_bot_from_guild(self, guild_id: str | None = None, *, timeout: float = 5.0) -> None:
        """The bot is kicked or the server removes it: GUILD_DELETE without ``unavailable``
        (discord.py's ``on_guild_remove``)."""
        self.dispatch("GUILD_DELETE", {"id": str(guild_id or self.guild_id)}, timeout=timeout)

    def dm_messages(self, user_id: str) -> list[Payload]:
        """What the bot sent the user in their DM channel, oldest first."""
        with self._lock:
            channel = self._dm_channels.get(str(user_id))
        return [] if channel is None else self.messages_in(channel["id"])

    def request_reconnect(self, *, timeout: float = 5.0) -> None:
        """Send op 7 RECONNECT: discord.py closes the socket and RESUMEs at ``resume_gateway_url``."""
        if self._loop is None:
            raise RuntimeError("the fake Discord is not running")

        async def send() -> None:
            for session in list(self._sessions.values()):
                if session.alive and session.connection is not None:
                    await session.connection.send({"op": 7, "d": None, "s": None, "t": None})

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout)

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str | None = None,
        *,
        channel_id: str | None = None,
        description: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> Payload:
        """Register bytes on the fake CDN; returns the attachment payload (``url``/``proxy_url`` point here).

        Image dimensions are read with Pillow when not given, as Discord fills them for images.
        """
        with self._lock:
            return self._store_attachment(
                data,
                filename,
                channel_id=str(channel_id or self.channel_id),
                content_type=content_type,
                description=description,
                width=width,
                height=height,
            )

    def post_user_message(
        self,
        content: str = "",
        *,
        author: Payload | None = None,
        channel_id: str | None = None,
        attachments: Iterable[Payload] = (),
        mention_bot: bool = False,
        reply_to: Payload | None = None,
        embeds: Iterable[Payload] = (),
    ) -> Payload:
        """Dispatch MESSAGE_CREATE for a message a human wrote; returns the message payload.

        ``mention_bot`` prefixes ``<@bot_id>`` and lists the bot in ``mentions`` (what a real mention
        looks like). Other ``<@id>`` mentions in ``content`` are resolved for known users.
        """
        author = author or self.default_user
        channel_id = str(channel_id or self.channel_id)
        with self._lock:
            channel = self._channel_or_raise(channel_id)
            guild_id = channel.get("guild_id")
            if mention_bot:
                content = f"<@{self.bot_user_id}> {content}".rstrip()
            member = self._member_of(guild_id, author["id"]) if guild_id else None
            if guild_id and member is None:
                raise LookupError(f"{author['username']} is not a member of the channel's guild")
            mentions, mention_roles = self._mentions_in(content, guild_id)
            reference = None
            if reply_to is not None:
                reference = {"type": 0, "message_id": reply_to["id"], "channel_id": reply_to["channel_id"]}
                if guild_id:
                    reference["guild_id"] = guild_id
            message = models.message_payload(
                channel_id=channel_id,
                author=author,
                content=content,
                guild_id=guild_id,
                member=member,
                attachments=list(attachments),
                mentions=mentions,
                mention_roles=mention_roles,
                embeds=list(embeds),
                message_reference=reference,
                referenced_message=self._referenced(reply_to["id"]) if reply_to is not None else None,
            )
        self.dispatch("MESSAGE_CREATE", message)
        return copy.deepcopy(message)

    def invoke_slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        user: Payload | None = None,
        channel_id: str | None = None,
        require_synced: bool = True,
    ) -> Payload:
        """Dispatch INTERACTION_CREATE for ``/name`` with ``options`` by name; returns the interaction.

        Attachment payloads (from :meth:`add_attachment`) become attachment options with the attachment in
        ``data.resolved.attachments``; str/int/float/bool values become string/integer/number/boolean
        options. With ``require_synced`` the command must have been synced (as on real Discord); its
        guild decides whether ``data.guild_id`` is set.
        """
        channel, member, user = self._invoker(user, channel_id)
        command = self._synced_command(
            name, models.COMMAND_CHAT_INPUT, channel.get("guild_id"), require_synced
        )
        resolved = models.ResolvedData()
        option_payloads = []
        for option_name, value in (options or {}).items():
            if isinstance(value, models.SubcommandOptions):
                option_payloads.append(models.subcommand_option(option_name, value, resolved))
            elif isinstance(value, dict) and "url" in value and "filename" in value:
                option_payloads.append(models.attachment_option(option_name, value, resolved))
            elif isinstance(value, dict) and "username" in value:
                with self._lock:
                    option_member = copy.deepcopy(self._member_of(channel.get("guild_id"), value["id"]))
                option_payloads.append(models.user_option(option_name, value, resolved, option_member))
            else:
                option_payloads.append(models.command_option(option_name, value))
        interaction = models.slash_command_interaction(
            application_id=self.application_id,
            name=name,
            channel=channel,
            member=member,
            user=None if member else user,
            options=option_payloads,
            resolved=resolved,
            command_id=command["id"] if command else None,
            command_guild_id=command.get("guild_id") if command else None,
            app_permissions=self._bot_permissions(channel.get("guild_id")),
            attachment_size_limit=self.attachment_size_limit,
        )
        self.dispatch("INTERACTION_CREATE", interaction)
        return copy.deepcopy(interaction)

    def invoke_message_command(
        self,
        name: str,
        target_message: Payload | str,
        *,
        user: Payload | None = None,
        require_synced: bool = True,
    ) -> Payload:
        """Dispatch INTERACTION_CREATE for the message context-menu command ``name`` on a stored message."""
        with self._lock:
            target_id = target_message if isinstance(target_message, str) else target_message["id"]
            target = copy.deepcopy(self._message_or_raise(str(target_id)))
        channel, member, user = self._invoker(user, target["channel_id"])
        command = self._synced_command(name, models.COMMAND_MESSAGE, channel.get("guild_id"), require_synced)
        interaction = models.message_command_interaction(
            application_id=self.application_id,
            name=name,
            channel=channel,
            target_message=target,
            member=member,
            user=None if member else user,
            command_id=command["id"] if command else None,
            command_guild_id=command.get("guild_id") if command else None,
            app_permissions=self._bot_permissions(channel.get("guild_id")),
            attachment_size_limit=self.attachment_size_limit,
        )
        self.dispatch("INTERACTION_CREATE", interaction)
        return copy.deepcopy(interaction)

    def click_button(
        self,
        message: Payload | str,
        custom_id: str,
        *,
        user: Payload | None = None,
        values: list[str] | None = None,
    ) -> Payload:
        """Dispatch a component interaction on a message the bot sent; ``custom_id`` must be on it.

        ``values`` turns the click into a select-menu choice (component type 3).
        """
        with self._lock:
            message_id = message if isinstance(message, str) else message["id"]
            stored = copy.deepcopy(self._message_or_raise(str(message_id)))
        components = _components_by_custom_id(stored.get("components", []))
        if custom_id not in components:
            raise LookupError(
                f"message {message_id} has no component {custom_id!r}; it has {sorted(components)}"
            )
        component_type = components[custom_id]["type"]
        channel, member, user = self._invoker(user, stored["channel_id"])
        interaction = models.component_interaction(
            application_id=self.application_id,
            channel=channel,
            message=stored,
            custom_id=custom_id,
            component_type=component_type,
            values=values,
            member=member,
            user=None if member else user,
            app_permissions=self._bot_permissions(channel.get("guild_id")),
            attachment_size_limit=self.attachment_size_limit,
        )
        self.dispatch("INTERACTION_CREATE", interaction)
        return copy.deepcopy(interaction)

    def submit_modal(
        self, opened_by: Payload | str, values: Mapping[str, str], *, user: Payload | None = None
    ) -> Payload:
        """Dispatch the modal submit for the modal the bot opened in answer to ``opened_by`` (an interaction).

        ``values`` maps text-input custom ids to what the user typed; unknown ids raise.
        """
        interaction_id = opened_by if isinstance(opened_by, str) else opened_by["id"]
        modal = self.modal_sent(interaction_id)
        if modal is None:
            raise LookupError(f"the bot opened no modal for interaction {interaction_id}")
        inputs = _components_by_custom_id(modal.get("components", []))
        unknown = set(values) - set(inputs)
        if unknown:
            raise LookupError(
                f"modal {modal['custom_id']!r} has no inputs {sorted(unknown)}; it has {sorted(inputs)}"
            )
        with self._lock:
            opener = self._interactions[str(interaction_id)]
            channel_id = opener.channel_id
            source_message = self._messages.get(opener.source_message_id or "")
        channel, member, user = self._invoker(user, channel_id)
        interaction = models.modal_submit_interaction(
            application_id=self.application_id,
            channel=channel,
            custom_id=modal["custom_id"],
            values=values,
            member=member,
            user=None if member else user,
            message=copy.deepcopy(source_message) if source_message else None,
            app_permissions=self._bot_permissions(channel.get("guild_id")),
            attachment_size_limit=self.attachment_size_limit,
        )
        self.dispatch("INTERACTION_CREATE", interaction)
        return copy.deepcopy(interaction)

    def _invoker(
        self, user: Payload | None, channel_id: str | None
    ) -> tuple[Payload, Payload | None, Payload]:
        user = user or self.default_user
        with self._lock:
            channel = copy.deepcopy(self._channel_or_raise(str(channel_id or self.channel_id)))
            guild_id = channel.get("guild_id")
            if guild_id is None:
                return channel, None, user
            member = self._member_of(guild_id, user["id"])
            if member is None:
                raise LookupError(f"{user['username']} is not a member of guild {guild_id}")
            guild = self._guilds[guild_id]
            member = copy.deepcopy(member)
            member["permissions"] = str(models.permissions_of(member, guild["roles"], guild_id))
            return channel, member, user

    def _synced_command(
        self, name: str, command_type: int, guild_id: str | None, required: bool
    ) -> Payload | None:
        with self._lock:
            scopes = [guild_id, None] if guild_id else [None]
            for scope in scopes:
                for command in self._commands.get(scope, []):
                    if command["name"] == name and command.get("type", 1) == command_type:
                        return copy.deepcopy(command)
            synced = {scope: [c["name"] for c in commands] for scope, commands in self._commands.items()}
        if required:
            raise LookupError(f"command {name!r} (type {command_type}) was never synced; synced: {synced}")
        return None

    def _bot_permissions(self, guild_id: str | None) -> int:
        if guild_id is None:
            return models.BOT_ROLE_PERMISSIONS
        with self._lock:
            member = self._member_of(guild_id, self.bot_user_id)
            guild = self._guilds[guild_id]
            return models.permissions_of(member or {"roles": []}, guild["roles"], guild_id)

    # --- shared state helpers (call with the lock held) ----------------------------------------------

    def _learn_from_dispatch(self, event: str, payload: Payload) -> None:
        if event == "MESSAGE_CREATE":
            self._messages[payload["id"]] = copy.deepcopy(payload)
        elif event == "MESSAGE_UPDATE" and payload.get("id") in self._messages:
            self._messages[payload["id"]].update(copy.deepcopy(payload))
        elif event == "MESSAGE_DELETE":
            self._messages.pop(payload.get("id", ""), None)
        elif event == "MESSAGE_DELETE_BULK":
            for message_id in payload.get("ids", []):
                self._messages.pop(message_id, None)
        elif event in ("CHANNEL_CREATE", "THREAD_CREATE"):
            self._add_channel(copy.deepcopy(payload))
        elif event == "INTERACTION_CREATE":
            state = _InteractionState(payload=copy.deepcopy(payload))
            self._interactions[state.interaction_id] = state
            self._interactions_by_token[state.token] = state
            message = payload.get("message")
            if message is not None and message["id"] not in self._messages:
                self._messages[message["id"]] = copy.deepcopy(message)

    def _add_channel(self, channel: Payload) -> None:
        self._channels[channel["id"]] = channel
        guild = self._guilds.get(channel.get("guild_id") or "")
        if guild is not None:
            key = "threads" if channel["type"] in (10, 11, 12) else "channels"
            guild.setdefault(key, []).append(channel)

    def _channel_or_raise(self, channel_id: str) -> Payload:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise _DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _message_or_raise(self, message_id: str, channel_id: str | None = None) -> Payload:
        message = self._messages.get(message_id)
        if message is None or (channel_id is not None and message["channel_id"] != channel_id):
            raise _DiscordError(404, 10008, "Unknown Message")
        return message

    def _member_of(self, guild_id: str | None, user_id: str) -> Payload | None:
        guild = self._guilds.get(guild_id or "")
        if guild is None:
            return None
        return next((m for m in guild.get("members", []) if m["user"]["id"] == user_id), None)

    def _mentions_in(self, content: str, guild_id: str | None) -> tuple[list[Payload], list[str]]:
        mentions = []
        for user_id in dict.fromkeys(_MENTION.findall(content)):
            user = self._users.get(user_id)
            if user is not None:
                member = self._member_of(guild_id, user_id) if guild_id else None
                mentions.append(models.mention_payload(user, member))
        role_ids = {role["id"] for role in self._guilds.get(guild_id or "", {}).get("roles", [])}
        mention_roles = [
            role_id for role_id in dict.fromkeys(_ROLE_MENTION.findall(content)) if role_id in role_ids
        ]
        return mentions, mention_roles

    def _referenced(self, message_id: str) -> Payload | None:
        message = self._messages.get(message_id)
        if message is None:
            return None
        referenced = copy.deepcopy(message)
        referenced.pop("referenced_message", None)
        return referenced

    def _store_attachment(
        self,
        data: bytes,
        filename: str,
        *,
        channel_id: str,
        content_type: str | None = None,
        description: str | None = None,
        width: int | None = None,
        height: int | None = None,
        ephemeral: bool = False,
    ) -> Payload:
        content_type = content_type or models.guess_content_type(filename)
        if width is None and content_type.startswith("image/"):
            width, height = _image_size(data)
        attachment_id = models.snowflake()
        quoted = urllib.parse.quote(filename)
        path = f"/attachments/{channel_id}/{attachment_id}/{quoted}"
        self._blobs[attachment_id] = _Blob(data=data, filename=filename, content_type=content_type)
        return models.attachment_payload(
            attachment_id=attachment_id,
            filename=filename,
            size=len(data),
            url=f"{self.base_url}/cdn{path}",
            proxy_url=f"{self.base_url}/media{path}",
            content_type=content_type,
            width=width,
            height=height,
            description=description,
            ephemeral=ephemeral,
        )

    # --- gateway -------------------------------------------------------------------------------------

    async def _gateway_entry(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        query = dict(request.query)
        with self._lock:
            self._gateway_connections.append(GatewayConnectionInfo(path=request.path, query=query))
        zlib_stream = self.transport_compression and query.get("compress") == "zlib-stream"
        connection = _GatewayConnection(ws, zlib_stream=zlib_stream)
        self._connections.add(connection)
        session: _GatewaySession | None = None
        try:
            if query.get("encoding", "json") != "json":
                await connection.close(4002, "only encoding=json is supported by the fake")
                return ws
            hello = {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
            await connection.send(hello)
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                raw = frame.data if frame.type is aiohttp.WSMsgType.TEXT else frame.data.decode()
                try:
                    payload = json.loads(raw)
                except ValueError:
                    await connection.close(4002, "Error while decoding payload.")
                    break
                with self._lock:
                    self._gateway_received.append(payload)
                session = await self._on_gateway_payload(connection, session, payload)
                if ws.closed:
                    break
        except Exception:
            self._record_fake_error()
            await connection.close(4000, "fake Discord error")
        finally:
            self._connections.discard(connection)
            if session is not None and session.connection is connection:
                session.connection = None
                if ws.close_code in (1000, 1001):  # a clean close ends the session (Discord does the same)
                    session.alive = False
        return ws

    async def _on_gateway_payload(
        self, connection: _GatewayConnection, session: _GatewaySession | None, payload: Payload
    ) -> _GatewaySession | None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            await connection.send({"op": 11, "d": None, "s": None, "t": None})
            return session
        if op == 2:
            if session is not None:
                await connection.close(4005, "Already authenticated.")
                return session
            if not isinstance(data, dict) or data.get("token") != self.token:
                await connection.close(4004, "Authentication failed.")
                return None
            return await self._identify(connection, data)
        if op == 6:
            return await self._resume(connection, data if isinstance(data, dict) else {})
        if session is None:
            await connection.close(4003, "Not authenticated.")
            return None
        if op == 8 and isinstance(data, dict):
            await self._send_member_chunks(session, data)
        elif op not in (3, 4):
            await connection.close(4001, "Unknown opcode.")
        return session

    async def _identify(self, connection: _GatewayConnection, identify: Payload) -> _GatewaySession:
        session = _GatewaySession(
            session_id=secrets.token_hex(16),
            intents=int(identify.get("intents", 0)),
            identify=identify,
            connection=connection,
        )
        with self._lock:
            self._sessions[session.session_id] = session
            guilds = [copy.deepcopy(guild) for guild in self._guilds.values()]
        ready: Payload = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": guild["id"], "unavailable": True} for guild in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.base_url.replace("http://", "ws://", 1) + RESUME_GATEWAY_PATH,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
        }
        if "shard" in identify:
            ready["shard"] = identify["shard"]
        await self._dispatch_to(session, "READY", ready)
        for guild in guilds:
            await self._dispatch_to(session, "GUILD_CREATE", guild)
        with self._lock:
            self._ready_count += 1
            self._notify_locked()
        return session

    async def _resume(self, connection: _GatewayConnection, resume: Payload) -> _GatewaySession | None:
        with self._lock:
            session = self._sessions.get(str(resume.get("session_id")))
        if session is None or not session.alive or resume.get("token") != self.token:
            await connection.send({"op": 9, "d": False, "s": None, "t": None})
            return None
        session.connection = connection
        last_seen = int(resume.get("seq") or 0)
        for sequence, event, data in list(session.sent):
            if sequence > last_seen:
                await connection.send({"op": 0, "t": event, "s": sequence, "d": data})
        await self._dispatch_to(session, "RESUMED", {})
        with self._lock:
            self._resume_count += 1
            self._notify_locked()
        return session

    async def _send_member_chunks(self, session: _GatewaySession, request: Payload) -> None:
        guild_ids = request.get("guild_id")
        guild_ids = guild_ids if isinstance(guild_ids, list) else [guild_ids]
        query = str(request.get("query") or "").lower()
        user_ids = {str(user_id) for user_id in request.get("user_ids") or []}
        limit = int(request.get("limit") or 0)
        for guild_id in guild_ids:
            with self._lock:
                members = copy.deepcopy(self._guilds.get(str(guild_id), {}).get("members", []))
            if user_ids:
                members = [m for m in members if m["user"]["id"] in user_ids]
            elif query:
                members = [m for m in members if m["user"]["username"].lower().startswith(query)]
            if limit:
                members = members[:limit]
            chunk: Payload = {
                "guild_id": str(guild_id),
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
            }
            if "nonce" in request:
                chunk["nonce"] = request["nonce"]
            if user_ids:
                chunk["not_found"] = sorted(user_ids - {m["user"]["id"] for m in members})
            await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _dispatch_to(self, session: _GatewaySession, event: str, data: Payload) -> None:
        session.sequence += 1
        session.sent.append((session.sequence, event, data))
        del session.sent[:-_REPLAYED_EVENTS_KEPT]
        if session.connection is not None:
            await session.connection.send({"op": 0, "t": event, "s": session.sequence, "d": data})

    async def _broadcast(self, event: str, data: Payload, *, require_session: bool = False) -> None:
        sessions = [session for session in self._sessions.values() if session.alive]
        if require_session and not sessions:
            raise RuntimeError(f"no client is connected to the fake gateway; cannot dispatch {event}")
        for session in sessions:
            await self._dispatch_to(session, event, self._as_seen_by(session, event, data))

    def _as_seen_by(self, session: _GatewaySession, event: str, data: Payload) -> Payload:
        """Blank message content for sessions without the privileged MESSAGE_CONTENT intent (Discord does)."""
        if (
            not self.enforce_message_content_intent
            or event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE")
            or session.intents & INTENT_MESSAGE_CONTENT
            or "guild_id" not in data
            or data.get("author", {}).get("id") == self.bot_user_id
            or any(user.get("id") == self.bot_user_id for user in data.get("mentions", []))
        ):
            return data
        stripped = dict(data, content="", embeds=[], attachments=[], components=[])
        stripped.pop("poll", None)
        return stripped

    # --- CDN -----------------------------------------------------------------------------------------

    async def _cdn_entry(self, request: web.Request) -> web.StreamResponse:
        attachment_id = request.match_info["attachment_id"]
        with self._lock:
            blob = self._blobs.get(attachment_id)
            if blob is not None:
                self._cdn_downloads.append(attachment_id)
                self._notify_locked()
        if blob is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=blob.data, headers={"Content-Type": blob.content_type})

    # --- REST plumbing -------------------------------------------------------------------------------

    async def _api_entry(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        route, params = self._match(request.method, path)
        body_error: _DiscordError | None = None
        try:
            json_body, files = await _read_body(request)
        except _DiscordError as exc:
            json_body, files, body_error = None, [], exc
        recorded = RecordedRequest(
            index=-1,
            method=request.method,
            path=path,
            query=dict(request.query),
            json=json_body,
            files=files,
            headers=dict(request.headers),
            route=route.name if route else None,
            params=params,
        )
        try:
            if route is None:
                raise _DiscordError(404, 0, "404: Not Found")
            if body_error is not None:
                raise body_error
            if route.needs_bot_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise _DiscordError(401, 0, "401: Unauthorized")
            result = await route.handler(recorded)
            reply = (
                result if isinstance(result, _Reply) else _Reply(200 if result is not None else 204, result)
            )
        except _DiscordError as exc:
            reply = _Reply(exc.status, exc.body())
        except Exception as exc:
            self._record_fake_error()
            # 400, not 500: discord.py retries 5xx with sleeps of 1, 3, 5... seconds
            reply = _Reply(400, {"message": f"fake Discord crashed: {exc!r}", "code": 0})
        recorded.status, recorded.response = reply.status, reply.body
        with self._lock:
            recorded.index = len(self._requests)
            self._requests.append(recorded)
            self._notify_locked()
            delay = self._response_delays.get(route.name) if route else None
        if delay:
            await asyncio.sleep(delay)
        if reply.body is None:
            return web.Response(status=reply.status)
        # exactly "application/json": discord.py's json_or_text() compares the header verbatim
        return web.Response(
            status=reply.status,
            body=json.dumps(reply.body).encode(),
            headers={"Content-Type": "application/json"},
        )

    def _record_fake_error(self) -> None:
        log.exception("fake Discord error")
        with self._lock:
            self._errors.append(traceback.format_exc())

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            if route.method == method:
                found = route.pattern.fullmatch(path)
                if found:
                    return route, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, str, Callable[[RecordedRequest], Awaitable[Any]], bool]] = [
            ("GET", "/users/@me", "get_current_user", self._get_current_user, True),
            ("GET", "/users/{user_id}", "get_user", self._get_user, True),
            ("POST", "/users/@me/channels", "create_dm", self._create_dm, True),
            ("GET", "/gateway", "get_gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", "get_gateway_bot", self._get_gateway_bot, True),
            ("GET", "/oauth2/applications/@me", "get_application", self._get_application, True),
            ("GET", "/applications/@me", "get_application", self._get_application, True),
            (
                "GET",
                "/applications/{application_id}/commands",
                "get_global_commands",
                self._get_commands,
                True,
            ),
            (
                "PUT",
                "/applications/{application_id}/commands",
                "sync_global_commands",
                self._put_commands,
                True,
            ),
            (
                "POST",
                "/applications/{application_id}/commands",
                "upsert_global_command",
                self._post_command,
                True,
            ),
            (
                "DELETE",
                "/applications/{application_id}/commands/{command_id}",
                "delete_global_command",
                self._delete_command,
                True,
            ),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "get_guild_commands",
                self._get_commands,
                True,
            ),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "sync_guild_commands",
                self._put_commands,
                True,
            ),
            (
                "POST",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                "upsert_guild_command",
                self._post_command,
                True,
            ),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                "delete_guild_command",
                self._delete_command,
                True,
            ),
            ("GET", "/channels/{channel_id}", "get_channel", self._get_channel, True),
            ("GET", "/channels/{channel_id}/messages", "get_messages", self._get_messages, True),
            ("POST", "/channels/{channel_id}/messages", "create_message", self._create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", "get_message", self._get_message, True),
            (
                "PATCH",
                "/channels/{channel_id}/messages/{message_id}",
                "edit_message",
                self._edit_message,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}",
                "delete_message",
                self._delete_message,
                True,
            ),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                "start_thread_from_message",
                self._start_thread_from_message,
                True,
            ),
            ("POST", "/channels/{channel_id}/threads", "start_thread", self._start_thread, True),
            ("POST", "/channels/{channel_id}/typing", "typing", self._typing, True),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                "add_reaction",
                self._add_reaction,
                True,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                "remove_reaction",
                self._remove_reaction,
                True,
            ),
            ("GET", "/guilds/{guild_id}", "get_guild", self._get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", "get_guild_channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/roles", "get_guild_roles", self._get_guild_roles, True),
            ("GET", "/guilds/{guild_id}/members", "get_members", self._get_members, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", "get_member", self._get_member, True),
            (
                "POST",
                "/interactions/{interaction_id}/{token}/callback",
                "interaction_callback",
                self._interaction_callback,
                False,
            ),
            ("POST", "/webhooks/{application_id}/{token}", "create_followup", self._create_followup, False),
            (
                "GET",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                "get_webhook_message",
                self._get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                "edit_webhook_message",
                self._edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                "delete_webhook_message",
                self._delete_webhook_message,
                False,
            ),
        ]
        routes = []
        for method, template, name, handler, needs_bot_auth in table:
            regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
            routes.append(_Route(method, re.compile(regex), name, handler, needs_bot_auth))
        return routes

    # --- REST: users, gateway, application, commands -------------------------------------------------

    async def _get_current_user(self, call: RecordedRequest) -> Payload:
        return self.bot_user

    async def _get_user(self, call: RecordedRequest) -> Payload:
        with self._lock:
            user = self._users.get(call.params["user_id"])
            if user is None:
                raise _DiscordError(404, 10013, "Unknown User")
            return copy.deepcopy(user)

    async def _create_dm(self, call: RecordedRequest) -> Payload:
        """Open (or reopen) the DM channel with a known user, as ``POST /users/@me/channels`` does."""
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            user = self._users.get(str(body.get("recipient_id", "")))
            if user is None:
                raise _DiscordError(400, 50007, "Cannot send messages to this user")
            existing = self._dm_channels.get(user["id"])
            if existing is None:
                existing = {
                    "id": models.snowflake(),
                    "type": models.DM,
                    "last_message_id": None,
                    "recipients": [copy.deepcopy(user)],
                    "flags": 0,
                }
                self._dm_channels[user["id"]] = existing
                self._channels[existing["id"]] = existing
            return copy.deepcopy(existing)

    async def _get_gateway(self, call: RecordedRequest) -> Payload:
        return {"url": self.gateway_url}

    async def _get_gateway_bot(self, call: RecordedRequest) -> Payload:
        return {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def _get_application(self, call: RecordedRequest) -> Payload:
        with self._lock:
            guild_count = len(self._guilds)
        return {
            "id": self.application_id,
            "name": self.world.bot_user["username"],
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot": self.bot_user,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": copy.deepcopy(self.world.owner),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": guild_count,
            "integration_types_config": {"0": {}},
        }

    def _command_scope(self, call: RecordedRequest) -> str | None:
        if call.params["application_id"] != self.application_id:
            raise _DiscordError(403, 50001, "Missing Access")
        guild_id = call.params.get("guild_id")
        if guild_id is not None and guild_id not in self._guilds:
            raise _DiscordError(403, 50001, "Missing Access")
        return guild_id

    def _stored_command(self, body: Any, scope: str | None, previous: list[Payload]) -> Payload:
        if not isinstance(body, dict) or not body.get("name"):
            raise _form_error("name", "BASE_TYPE_REQUIRED", "This field is required")
        command_type = int(body.get("type", models.COMMAND_CHAT_INPUT))
        description = body.get("description") or ""
        if command_type == models.COMMAND_CHAT_INPUT and not 1 <= len(description) <= 100:
            raise _form_error("description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        same = next((c for c in previous if c["name"] == body["name"] and c["type"] == command_type), None)
        command = {
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            "name_localizations": None,
            "description_localizations": None,
            **copy.deepcopy(body),
            "id": same["id"] if same else models.snowflake(),
            "application_id": self.application_id,
            "type": command_type,
            "description": description,
            "version": models.snowflake(),
        }
        if scope is not None:
            command["guild_id"] = scope
        return command

    async def _get_commands(self, call: RecordedRequest) -> list[Payload]:
        with self._lock:
            return copy.deepcopy(self._commands.get(self._command_scope(call), []))

    async def _put_commands(self, call: RecordedRequest) -> list[Payload]:
        if not isinstance(call.json, list):
            raise _DiscordError(400, 50035, "Invalid Form Body")
        with self._lock:
            scope = self._command_scope(call)
            previous = self._commands.get(scope, [])
            commands = [self._stored_command(body, scope, previous) for body in call.json]
            keys = [(c["name"], c["type"]) for c in commands]
            if len(keys) != len(set(keys)):
                raise _DiscordError(400, 50035, "Invalid Form Body: duplicate command names")
            self._commands[scope] = commands
            return copy.deepcopy(commands)

    async def _post_command(self, call: RecordedRequest) -> _Reply:
        with self._lock:
            scope = self._command_scope(call)
            previous = self._commands.setdefault(scope, [])
            command = self._stored_command(call.json, scope, previous)
            existing = next((i for i, c in enumerate(previous) if c["id"] == command["id"]), None)
            if existing is None:
                previous.append(command)
            else:
                previous[existing] = command
            return _Reply(200 if existing is not None else 201, copy.deepcopy(command))

    async def _delete_command(self, call: RecordedRequest) -> None:
        with self._lock:
            scope = self._command_scope(call)
            commands = self._commands.get(scope, [])
            remaining = [c for c in commands if c["id"] != call.params["command_id"]]
            if len(remaining) == len(commands):
                raise _DiscordError(404, 10063, "Unknown application command")
            self._commands[scope] = remaining

    # --- REST: channels and messages -----------------------------------------------------------------

    async def _get_channel(self, call: RecordedRequest) -> Payload:
        with self._lock:
            return copy.deepcopy(self._channel_or_raise(call.params["channel_id"]))

    async def _get_messages(self, call: RecordedRequest) -> list[Payload]:
        limit = min(int(call.query.get("limit", 50)), 100)
        with self._lock:
            channel_id = self._channel_or_raise(call.params["channel_id"])["id"]
            found = [m for m in self._messages.values() if m["channel_id"] == channel_id]
            newest_first = sorted(found, key=lambda m: int(m["id"]), reverse=True)
            if "before" in call.query:
                newest_first = [m for m in newest_first if int(m["id"]) < int(call.query["before"])]
            if "after" in call.query:
                newest_first = [m for m in newest_first if int(m["id"]) > int(call.query["after"])]
            return copy.deepcopy(newest_first[:limit])

    async def _create_message(self, call: RecordedRequest) -> Payload:
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            channel = self._channel_or_raise(call.params["channel_id"])
            if channel["type"] == models.GUILD_CATEGORY:
                raise _DiscordError(400, 50008, "Cannot send messages in a non-text channel")
            message = self._new_bot_message(channel["id"], body, call.files)
        await self._echo("MESSAGE_CREATE", message)
        return copy.deepcopy(message)

    async def _get_message(self, call: RecordedRequest) -> Payload:
        with self._lock:
            self._channel_or_raise(call.params["channel_id"])
            return copy.deepcopy(self._message_or_raise(call.params["message_id"], call.params["channel_id"]))

    async def _edit_message(self, call: RecordedRequest) -> Payload:
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            message = self._message_or_raise(call.params["message_id"], call.params["channel_id"])
            if message["author"]["id"] != self.bot_user_id and set(body) - {"flags"}:
                raise _DiscordError(403, 50005, "Cannot edit a message authored by another user")
            self._apply_edit(message, body, call.files)
            edited = copy.deepcopy(message)
        await self._echo("MESSAGE_UPDATE", edited)
        return edited

    async def _delete_message(self, call: RecordedRequest) -> None:
        with self._lock:
            message = self._message_or_raise(call.params["message_id"], call.params["channel_id"])
            del self._messages[message["id"]]
            guild_id = self._channels[message["channel_id"]].get("guild_id")
        deleted = {"id": message["id"], "channel_id": message["channel_id"]}
        if guild_id:
            deleted["guild_id"] = guild_id
        await self._broadcast("MESSAGE_DELETE", deleted)

    async def _start_thread_from_message(self, call: RecordedRequest) -> _Reply:
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            channel = self._channel_or_raise(call.params["channel_id"])
            message = self._message_or_raise(call.params["message_id"], channel["id"])
            if message["id"] in self._channels:
                raise _DiscordError(400, 160004, "A thread has already been created for this message")
            # a thread started from a message takes the message's id (Discord does this)
            thread = self._new_thread(
                channel, body, thread_id=message["id"], thread_type=models.PUBLIC_THREAD
            )
        await self._broadcast("THREAD_CREATE", dict(thread, newly_created=True))
        return _Reply(201, copy.deepcopy(thread))

    async def _start_thread(self, call: RecordedRequest) -> _Reply:
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            channel = self._channel_or_raise(call.params["channel_id"])
            thread = self._new_thread(channel, body, thread_id=None, thread_type=int(body.get("type", 12)))
        await self._broadcast("THREAD_CREATE", dict(thread, newly_created=True))
        return _Reply(201, copy.deepcopy(thread))

    def _new_thread(
        self, channel: Payload, body: Payload, *, thread_id: str | None, thread_type: int
    ) -> Payload:
        if channel["type"] != models.GUILD_TEXT:
            raise _DiscordError(400, 50024, "Cannot execute action on this channel type")
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise _form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        thread = models.thread_payload(
            guild_id=channel["guild_id"],
            parent_id=channel["id"],
            owner_id=self.bot_user_id,
            name=name,
            thread_id=thread_id,
            thread_type=thread_type,
            auto_archive_duration=int(body.get("auto_archive_duration", 1440)),
        )
        self._add_channel(thread)
        return thread

    async def _typing(self, call: RecordedRequest) -> None:
        with self._lock:
            self._channel_or_raise(call.params["channel_id"])

    async def _add_reaction(self, call: RecordedRequest) -> None:
        with self._lock:
            message = self._message_or_raise(call.params["message_id"], call.params["channel_id"])
            emoji = call.params["emoji"]
            reactions = message.setdefault("reactions", [])
            if not any(r.get("_fake_emoji") == emoji for r in reactions):
                name, _, emoji_id = emoji.partition(":")
                reactions.append(
                    {
                        "count": 1,
                        "count_details": {"burst": 0, "normal": 1},
                        "me": True,
                        "me_burst": False,
                        "burst_colors": [],
                        "emoji": {"id": emoji_id or None, "name": name},
                        "_fake_emoji": emoji,
                    }
                )

    async def _remove_reaction(self, call: RecordedRequest) -> None:
        with self._lock:
            message = self._message_or_raise(call.params["message_id"], call.params["channel_id"])
            emoji = call.params["emoji"]
            message["reactions"] = [r for r in message.get("reactions", []) if r.get("_fake_emoji") != emoji]

    # --- REST: guilds --------------------------------------------------------------------------------

    def _guild_or_raise(self, guild_id: str) -> Payload:
        guild = self._guilds.get(guild_id)
        if guild is None:
            raise _DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def _get_guild(self, call: RecordedRequest) -> Payload:
        with self._lock:
            guild = copy.deepcopy(self._guild_or_raise(call.params["guild_id"]))
        for key in ("channels", "threads", "members", "voice_states", "presences", "joined_at", "large"):
            guild.pop(key, None)
        if call.query.get("with_counts") in ("true", "1", "True"):
            guild["approximate_member_count"] = guild.get("member_count", 0)
            guild["approximate_presence_count"] = 0
        return guild

    async def _get_guild_channels(self, call: RecordedRequest) -> list[Payload]:
        with self._lock:
            return copy.deepcopy(self._guild_or_raise(call.params["guild_id"]).get("channels", []))

    async def _get_guild_roles(self, call: RecordedRequest) -> list[Payload]:
        with self._lock:
            return copy.deepcopy(self._guild_or_raise(call.params["guild_id"]).get("roles", []))

    async def _get_members(self, call: RecordedRequest) -> list[Payload]:
        limit = int(call.query.get("limit", 1))
        with self._lock:
            members = self._guild_or_raise(call.params["guild_id"]).get("members", [])
            return copy.deepcopy(members[:limit])

    async def _get_member(self, call: RecordedRequest) -> Payload:
        with self._lock:
            self._guild_or_raise(call.params["guild_id"])
            member = self._member_of(call.params["guild_id"], call.params["user_id"])
            if member is None:
                raise _DiscordError(404, 10007, "Unknown Member")
            return copy.deepcopy(member)

    # --- REST: interactions and followups ------------------------------------------------------------

    async def _interaction_callback(self, call: RecordedRequest) -> _Reply:
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            state = self._interactions.get(call.params["interaction_id"])
            if state is None or state.token != call.params["token"]:
                raise _DiscordError(404, 10062, "Unknown interaction")
            if state.callback_type is not None:
                raise _DiscordError(400, 40060, "Interaction has already been acknowledged.")
            deadline = self.interaction_ack_deadline_s
            if deadline is not None and time.monotonic() - state.dispatched_at > deadline:
                # Discord drops interactions not acknowledged within 3 s: slow work must defer() first
                raise _DiscordError(404, 10062, "Unknown interaction")
            callback_type = int(body.get("type", 0))
            data = body.get("data") or {}
            events, message = self._answer_interaction(state, callback_type, data, call.files)
            state.callback_type = callback_type
            response_message = copy.deepcopy(message) if message is not None else None
        for event, payload in events:
            await self._echo(event, payload)
        if call.query.get("with_response") not in ("1", "true", "True"):
            return _Reply(204, None)
        interaction: Payload = {"id": state.interaction_id, "type": state.payload["type"]}
        resource: Payload = {"type": callback_type}
        if response_message is not None:
            interaction.update(
                response_message_id=response_message["id"],
                response_message_loading=bool(response_message["flags"] & models.FLAG_LOADING),
                response_message_ephemeral=bool(response_message["flags"] & models.FLAG_EPHEMERAL),
            )
            resource["message"] = response_message
        return _Reply(200, {"interaction": interaction, "resource": resource})

    def _answer_interaction(
        self, state: _InteractionState, callback_type: int, data: Payload, files: list[UploadedFile]
    ) -> tuple[list[tuple[str, Payload]], Payload | None]:
        """Apply one callback; returns the gateway events to echo and the message it produced, if any."""
        interaction_type = state.payload["type"]
        is_component = interaction_type == models.INTERACTION_MESSAGE_COMPONENT
        if callback_type == 1:
            if interaction_type != models.INTERACTION_PING:
                raise _DiscordError(400, 50035, "Invalid Form Body: PONG only answers PING")
            return [], None
        if callback_type in (4, 5):
            flags = int(data.get("flags") or 0) & models.FLAG_EPHEMERAL
            if callback_type == 5:
                message = self._new_bot_message(
                    state.channel_id,
                    {},
                    [],
                    interaction=state,
                    extra_flags=flags | models.FLAG_LOADING,
                    validate=False,
                )
                state.awaiting_first_followup = True
            else:
                message = self._new_bot_message(
                    state.channel_id, data, files, interaction=state, extra_flags=flags
                )
            state.original_message_id = message["id"]
            events = [] if message["flags"] & models.FLAG_EPHEMERAL else [("MESSAGE_CREATE", message)]
            return events, message
        if callback_type in (6, 7):
            if not (
                is_component
                or (interaction_type == models.INTERACTION_MODAL_SUBMIT and state.source_message_id)
            ):
                raise _DiscordError(400, 40043, "This interaction type does not support updating a message")
            source = self._message_or_raise(state.source_message_id or "")
            state.original_message_id = source["id"]
            if callback_type == 6:
                return [], None
            self._apply_edit(source, data, files)
            events = [] if source["flags"] & models.FLAG_EPHEMERAL else [("MESSAGE_UPDATE", source)]
            return events, source
        if callback_type == 8:
            if interaction_type != models.INTERACTION_AUTOCOMPLETE:
                raise _DiscordError(
                    400, 50035, "Invalid Form Body: autocomplete result for a non-autocomplete"
                )
            return [], None
        if callback_type == 9:
            if interaction_type == models.INTERACTION_MODAL_SUBMIT:
                raise _DiscordError(400, 50035, "Invalid Form Body: a modal cannot answer a modal submit")
            for key in ("custom_id", "title", "components"):
                if not data.get(key):
                    raise _form_error(f"data.{key}", "BASE_TYPE_REQUIRED", "This field is required")
            state.modal = copy.deepcopy(data)
            return [], None
        raise _form_error("type", "BASE_TYPE_CHOICES", f"Value {callback_type} is not a valid callback type")

    def _interaction_for_webhook(self, call: RecordedRequest) -> _InteractionState:
        state = self._interactions_by_token.get(call.params["token"])
        if (
            state is None
            or call.params["application_id"] != self.application_id
            or state.callback_type is None
        ):
            # Discord only accepts the token once the interaction has been acknowledged
            raise _DiscordError(404, 10015, "Unknown Webhook")
        return state

    async def _create_followup(self, call: RecordedRequest) -> _Reply:
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            state = self._interaction_for_webhook(call)
            original = self._messages.get(state.original_message_id or "")
            if state.awaiting_first_followup and original is not None:
                # the first followup after a deferred response replaces the "thinking" message
                _validate_message(body, call.files, self.attachment_size_limit, require_content=True)
                self._apply_edit(original, body, call.files)
                state.awaiting_first_followup = False
                message, event = original, "MESSAGE_UPDATE"
            else:
                extra_flags = int(body.get("flags") or 0) & models.FLAG_EPHEMERAL
                message = self._new_bot_message(
                    state.channel_id, body, call.files, interaction=state, extra_flags=extra_flags
                )
                event = "MESSAGE_CREATE"
            answer = copy.deepcopy(message)
        if not answer["flags"] & models.FLAG_EPHEMERAL:
            await self._echo(event, answer)
        if call.query.get("wait") in ("1", "true", "True"):
            return _Reply(200, answer)
        return _Reply(204, None)

    def _webhook_message(self, call: RecordedRequest) -> tuple[_InteractionState, Payload]:
        state = self._interaction_for_webhook(call)
        message_id = call.params["message_id"]
        if message_id == "@original":
            message_id = state.original_message_id or ""
        message = self._message_or_raise(message_id)
        return state, message

    async def _get_webhook_message(self, call: RecordedRequest) -> Payload:
        with self._lock:
            return copy.deepcopy(self._webhook_message(call)[1])

    async def _edit_webhook_message(self, call: RecordedRequest) -> Payload:
        body = call.json if isinstance(call.json, dict) else {}
        with self._lock:
            state, message = self._webhook_message(call)
            self._apply_edit(message, body, call.files)
            if message["id"] == state.original_message_id:
                state.awaiting_first_followup = False
            edited = copy.deepcopy(message)
        if not edited["flags"] & models.FLAG_EPHEMERAL:
            await self._echo("MESSAGE_UPDATE", edited)
        return edited

    async def _delete_webhook_message(self, call: RecordedRequest) -> None:
        with self._lock:
            _, message = self._webhook_message(call)
            del self._messages[message["id"]]

    # --- messages the bot creates --------------------------------------------------------------------

    def _new_bot_message(
        self,
        channel_id: str,
        body: Payload,
        files: list[UploadedFile],
        *,
        interaction: _InteractionState | None = None,
        extra_flags: int = 0,
        validate: bool = True,
    ) -> Payload:
        if validate:
            _validate_message(body, files, self.attachment_size_limit, require_content=True)
        channel = self._channel_or_raise(channel_id)
        guild_id = channel.get("guild_id")
        requested_flags = int(body.get("flags") or 0)
        if interaction is None and requested_flags & models.FLAG_EPHEMERAL:
            raise _DiscordError(400, 50035, "Invalid Form Body: only interaction responses can be ephemeral")
        flags = (requested_flags & _ALLOWED_SEND_FLAGS & ~models.FLAG_EPHEMERAL) | extra_flags
        ephemeral = bool(flags & models.FLAG_EPHEMERAL)
        reference, referenced = self._checked_reference(body.get("message_reference"), channel_id, guild_id)
        content = str(body.get("content") or "")
        mentions, mention_roles = self._mentions_in(content, guild_id)
        message_type, metadata = None, None
        if interaction is not None:
            message_type, metadata = self._interaction_message_type(interaction)
        message = models.message_payload(
            channel_id=channel_id,
            author=self.bot_user,
            content=content,
            guild_id=guild_id,
            member=self._member_of(guild_id, self.bot_user_id) if guild_id else None,
            attachments=self._attachments_for(body, files, channel_id, existing=[], ephemeral=ephemeral),
            mentions=mentions,
            mention_roles=mention_roles,
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            message_reference=reference,
            referenced_message=referenced,
            message_type=message_type,
            flags=flags,
            application_id=self.application_id if interaction is not None else None,
            interaction_metadata=metadata,
        )
        if body.get("poll") is not None:
            message["poll"] = copy.deepcopy(body["poll"])
        if body.get("tts"):
            message["tts"] = True
        self._messages[message["id"]] = message
        return message

    def _interaction_message_type(self, state: _InteractionState) -> tuple[int, Payload]:
        payload = state.payload
        metadata: Payload = {
            "id": payload["id"],
            "type": payload["type"],
            "user": copy.deepcopy(state.user),
            "authorizing_integration_owners": payload.get("authorizing_integration_owners", {}),
        }
        message_type = models.MESSAGE_DEFAULT
        if payload["type"] == models.INTERACTION_APPLICATION_COMMAND:
            command_type = payload["data"].get("type", models.COMMAND_CHAT_INPUT)
            metadata["name"] = payload["data"]["name"]
            if command_type == models.COMMAND_CHAT_INPUT:
                message_type = models.MESSAGE_CHAT_INPUT_COMMAND
            else:
                message_type = models.MESSAGE_CONTEXT_MENU_COMMAND
                if command_type == models.COMMAND_MESSAGE:
                    metadata["target_message_id"] = payload["data"]["target_id"]
        elif state.source_message_id is not None:
            metadata["interacted_message_id"] = state.source_message_id
        return message_type, metadata

    def _checked_reference(
        self, reference: Any, channel_id: str, guild_id: str | None
    ) -> tuple[Payload | None, Payload | None]:
        if not isinstance(reference, dict) or reference.get("message_id") is None:
            return None, None
        reference = dict(reference)
        reference["message_id"] = str(reference["message_id"])
        reference["channel_id"] = str(reference.get("channel_id") or channel_id)
        if guild_id is not None:
            reference.setdefault("guild_id", guild_id)
        target = self._messages.get(reference["message_id"])
        if target is None or target["channel_id"] != reference["channel_id"]:
            if reference.get("fail_if_not_exists", True):
                raise _form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            return None, None
        return reference, self._referenced(reference["message_id"])

    def _attachments_for(
        self,
        body: Payload,
        files: list[UploadedFile],
        channel_id: str,
        *,
        existing: list[Payload],
        ephemeral: bool,
    ) -> list[Payload]:
        """Resolve ``attachments``: ids of existing attachments keep them, indices upload ``files[n]``."""
        entries = body.get("attachments")
        if entries is None:
            entries = [*existing, *({"id": index} for index in range(len(files)))]
        existing_by_id = {attachment["id"]: attachment for attachment in existing}
        result, used = [], set()
        for entry in entries:
            entry_id = str(entry.get("id"))
            if entry_id in existing_by_id:
                result.append(existing_by_id[entry_id])
                continue
            try:
                index = int(entry_id)
                upload = files[index]
            except (ValueError, IndexError):
                raise _form_error(
                    "attachments", "ATTACHMENT_NOT_FOUND", f"no file for attachment {entry_id}"
                ) from None
            used.add(index)
            result.append(
                self._store_attachment(
                    upload.data,
                    entry.get("filename") or upload.filename,
                    channel_id=channel_id,
                    description=entry.get("description"),
                    ephemeral=ephemeral,
                )
            )
        for index, upload in enumerate(files):
            if index not in used:
                result.append(
                    self._store_attachment(
                        upload.data, upload.filename, channel_id=channel_id, ephemeral=ephemeral
                    )
                )
        return result

    def _apply_edit(self, message: Payload, body: Payload, files: list[UploadedFile]) -> None:
        _validate_message(body, files, self.attachment_size_limit, require_content=False)
        if "content" in body:
            message["content"] = body["content"] or ""
            message["mentions"], message["mention_roles"] = self._mentions_in(
                message["content"], message.get("guild_id")
            )
        for key in ("embeds", "components"):
            if key in body:
                message[key] = list(body[key] or [])
        if body.get("flags") is not None:
            kept = message["flags"] & ~4
            message["flags"] = kept | (int(body["flags"]) & 4)
        if "attachments" in body or files:
            ephemeral = bool(message["flags"] & models.FLAG_EPHEMERAL)
            message["attachments"] = self._attachments_for(
                body, files, message["channel_id"], existing=message["attachments"], ephemeral=ephemeral
            )
        if message["flags"] & models.FLAG_LOADING:
            message["flags"] &= ~models.FLAG_LOADING  # an edit fills in a deferred "thinking" message
        else:
            message["edited_timestamp"] = models.iso_timestamp()

    async def _echo(self, event: str, message: Payload) -> None:
        """Send the bot's own message back over the gateway, as Discord does for guild messages."""
        if self.echo_bot_messages:
            payload = copy.deepcopy(message)
            sessions = [s for s in self._sessions.values() if s.alive and s.intents & INTENT_GUILD_MESSAGES]
            for session in sessions:
                await self._dispatch_to(session, event, payload)


class _ClientErrorCapture(logging.Handler):
    """Collects exceptions discord.py logs with a traceback ("Ignoring exception in on_message" etc.)."""

    def __init__(self, fake: FakeDiscord) -> None:
        super().__init__(level=logging.ERROR)
        self._fake = fake

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self._fake._record_client_error(record.exc_info[1])


# Names discord.py 2.7 gives the tasks that run bot code for one event or interaction.
_BOT_TASK_PREFIXES = (
    "discord.py: ",
    "CommandTree-invoker",
    "discord-ui-view-dispatch-",
    "discord-ui-modal-dispatch-",
    "discord-ui-dynamic-item-",
)


async def _settle_bot_tasks(timeout: float) -> None:
    """Wait (up to ``timeout``) for the tasks discord.py started to run bot code on this loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    current = asyncio.current_task()
    while True:
        pending = [
            task
            for task in asyncio.all_tasks()
            if task is not current and not task.done() and task.get_name().startswith(_BOT_TASK_PREFIXES)
        ]
        remaining = deadline - loop.time()
        if not pending or remaining <= 0:
            return
        await asyncio.wait(pending, timeout=remaining)


async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    content_type = request.content_type
    if content_type == "multipart/form-data":
        payload: Any = None
        fields: dict[str, str] = {}
        files: list[UploadedFile] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader):
                continue
            if part.name == "payload_json":
                try:
                    payload = json.loads(await part.text())
                except ValueError:
                    raise _DiscordError(400, 50109, "The request body contains invalid JSON.") from None
            elif part.filename is not None:
                data = bytes(await part.read(decode=False))
                part_type = part.headers.get(aiohttp.hdrs.CONTENT_TYPE, "application/octet-stream")
                files.append(UploadedFile(part.filename, data, part_type))
            elif part.name is not None:
                fields[part.name] = await part.text()
        return (payload if payload is not None else (fields or None)), files
    raw = await request.read()
    if not raw:
        return None, []
    if content_type == "application/json":
        try:
            return json.loads(raw), []
        except ValueError:
            raise _DiscordError(400, 50109, "The request body contains invalid JSON.") from None
    return None, []


def _validate_message(
    body: Payload, files: list[UploadedFile], size_limit: int, *, require_content: bool
) -> None:
    content = body.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT_LENGTH:
        raise _form_error(
            "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT_LENGTH} or fewer in length."
        )
    if len(body.get("embeds") or []) > MAX_EMBEDS:
        raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
    if len(files) > MAX_FILES:
        raise _form_error("files", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_FILES} or fewer in length.")
    if any(len(upload.data) > size_limit for upload in files):
        raise _DiscordError(413, 40005, "Request entity too large")
    if require_content and not (
        str(content or "").strip()
        or body.get("embeds")
        or files
        or body.get("attachments")
        or body.get("components")
        or body.get("sticker_ids")
        or body.get("poll")
    ):
        raise _DiscordError(400, 50006, "Cannot send an empty message")


def _components_by_custom_id(components: Iterable[Payload]) -> dict[str, Payload]:
    found: dict[str, Payload] = {}
    for component in components:
        if "custom_id" in component:
            found[component["custom_id"]] = component
        for key in ("components", "accessory", "component"):
            nested = component.get(key)
            if isinstance(nested, list):
                found.update(_components_by_custom_id(nested))
            elif isinstance(nested, dict):
                found.update(_components_by_custom_id([nested]))
    return found


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        from PIL import Image
    except ImportError:
        return None, None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.width, image.height
    except Exception:
        return None, None
