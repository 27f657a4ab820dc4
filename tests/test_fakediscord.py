"""The fake Discord against the real discord.py client: login, gateway, messages, app commands, views.

Each test runs a discord.py client on its own ``asyncio.run`` loop while the fake serves from its
thread; nothing in discord.py is mocked. Clients use ``guild_ready_timeout=0.05``: discord.py waits that
long after the last GUILD_CREATE before firing on_ready (2 s by default).
"""

from __future__ import annotations

import asyncio
import io
import math
import os
from collections.abc import Coroutine
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from PIL import Image

from bot.discord_endpoints import DEFAULT_API_BASE, DEFAULT_GATEWAY_URL, current_endpoints, point_discord_at
from tests.fakediscord import BotRaisedError, FakeDiscord
from tests.fakediscord.models import FLAG_EPHEMERAL, FLAG_LOADING

pytest_plugins = ["tests.fakediscord.conftest_plugin"]

pytestmark = pytest.mark.timeout(30)

FAST_READY = 0.05  # seconds; see the module docstring


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, timeout=20))


def png_bytes(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def plain_client() -> discord.Client:
    return discord.Client(intents=discord.Intents.default(), guild_ready_timeout=FAST_READY)


class EchoBot(commands.Bot):
    """A small bot with the commands the interaction tests use, synced to the fake's guild on startup."""

    def __init__(self, guild_id: str) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=FAST_READY,
        )
        self.home = discord.Object(id=int(guild_id))
        for command in (
            app_commands.Command(name="echo", description="Echo an image", callback=echo),
            app_commands.Command(name="note", description="Write a note", callback=note),
            app_commands.ContextMenu(name="Describe attachments", callback=describe),
        ):
            self.tree.add_command(command, guild=self.home)

    async def setup_hook(self) -> None:
        await self.tree.sync(guild=self.home)


async def echo(interaction: discord.Interaction, image: discord.Attachment, private: bool = False) -> None:
    if private:
        await interaction.response.send_message(f"{image.filename} ({image.size} bytes)", ephemeral=True)
        return
    await interaction.response.defer()
    data = await image.read()
    await interaction.followup.send(f"echo {image.filename}", file=discord.File(io.BytesIO(data), "echo.png"))


class NoteModal(discord.ui.Modal, title="Case note"):
    text = discord.ui.TextInput(label="Note", custom_id="note-text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"noted: {self.text.value}", ephemeral=True)


async def note(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(NoteModal())


async def describe(interaction: discord.Interaction, message: discord.Message) -> None:
    sizes = [len(await attachment.read()) for attachment in message.attachments]
    names = ", ".join(f"{a.filename}={size}" for a, size in zip(message.attachments, sizes, strict=True))
    await interaction.response.send_message(f"{len(sizes)} attachment(s): {names}", ephemeral=True)


# --- endpoints ---------------------------------------------------------------------------------------


def test_point_discord_at_switches_both_endpoints_and_restores_them() -> None:
    before = current_endpoints()
    with point_discord_at("http://127.0.0.1:9/api/v10/", "ws://127.0.0.1:9/gateway") as restorer:
        assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:9/api/v10/users/@me"
        assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:9/gateway"
        assert restorer.previous == before
    assert current_endpoints() == before
    assert (before.api_base, before.gateway_url) == (DEFAULT_API_BASE, DEFAULT_GATEWAY_URL)

    restore = point_discord_at(gateway_url="wss://gateway.example")
    assert current_endpoints().api_base == before.api_base
    assert current_endpoints().gateway_url == "wss://gateway.example"
    restore()
    restore()
    assert current_endpoints() == before

    with pytest.raises(ValueError, match="ws"):
        point_discord_at(gateway_url="http://127.0.0.1/gateway")
    with pytest.raises(ValueError, match="query"):
        point_discord_at(api_base="http://127.0.0.1/api/v10?x=1")
    assert current_endpoints() == before


# --- login and gateway -------------------------------------------------------------------------------


def test_client_logs_in_becomes_ready_and_sees_the_guild(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        client = plain_client()
        ready_events: list[bool] = []

        @client.event
        async def on_ready() -> None:
            ready_events.append(True)

        async with fake_discord.connected(client, ready_timeout=3):
            assert ready_events == [True]
            assert client.user is not None and client.user.id == int(fake_discord.bot_user_id)
            assert client.application_id == int(fake_discord.application_id)
            guild = client.get_guild(int(fake_discord.guild_id))
            assert guild is not None and guild.name == "Pathology Lab"
            channel = guild.get_channel(int(fake_discord.channel_id))
            assert isinstance(channel, discord.TextChannel) and channel.name == "cases"
            assert guild.me is not None and guild.me.id == client.user.id
            assert channel.permissions_for(guild.me).attach_files
            assert math.isfinite(client.latency)  # the heartbeat sent on HELLO was ACKed

    run(scenario())

    assert os.environ["PLIPBOT_DISCORD__API_BASE"] == fake_discord.api_base
    assert os.environ["PLIPBOT_DISCORD__GATEWAY_URL"] == fake_discord.gateway_url
    assert [request.route for request in fake_discord.requests] == ["get_current_user", "get_application"]
    (connection,) = fake_discord.gateway_connections
    assert connection.query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    (identify,) = fake_discord.identify_payloads
    assert identify["token"] == fake_discord.token
    assert identify["intents"] == discord.Intents.default().value
    assert not identify["intents"] & discord.Intents(message_content=True).value


def test_auto_sharded_client_asks_for_the_gateway_and_identifies_with_its_shard(
    fake_discord: FakeDiscord,
) -> None:
    async def scenario() -> None:
        client = discord.AutoShardedClient(intents=discord.Intents.default(), guild_ready_timeout=FAST_READY)
        async with fake_discord.connected(client):
            assert client.shard_count == 1
            assert client.get_guild(int(fake_discord.guild_id)) is not None

    run(scenario())
    assert "get_gateway_bot" in [request.route for request in fake_discord.requests]
    assert fake_discord.identify_payloads[0]["shard"] == [0, 1]


def test_wrong_token_fails_login(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        client = plain_client()
        try:
            with pytest.raises(discord.LoginFailure):
                await client.login("not-the-token")
        finally:
            await client.close()

    run(scenario())
    assert fake_discord.requests[0].status == 401


def test_dispatch_without_a_connected_client_fails_loudly(fake_discord: FakeDiscord) -> None:
    with pytest.raises(RuntimeError, match="no client is connected"):
        fake_discord.post_user_message("anyone there?")
    with pytest.raises(TimeoutError, match="get_channel"):
        fake_discord.wait_for_request_blocking(route="get_channel", timeout=0.1)


def test_reconnect_resumes_the_session_and_replays_nothing_lost(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        client = plain_client()
        seen: list[str] = []

        @client.event
        async def on_message(message: discord.Message) -> None:
            seen.append(message.content)

        async with fake_discord.connected(client):
            fake_discord.request_reconnect()
            await fake_discord.wait_for_resume()
            fake_discord.post_user_message("after resume", mention_bot=True)
            await fake_discord.wait_until(lambda: seen or None, what="on_message after RESUME")

        assert seen == [f"<@{fake_discord.bot_user_id}> after resume"]

    run(scenario())
    paths = [connection.path for connection in fake_discord.gateway_connections]
    assert paths == ["/gateway", "/gateway/resume"]
    assert [payload["op"] for payload in fake_discord.gateway_received].count(6) == 1


# --- messages ----------------------------------------------------------------------------------------


def test_mention_with_image_is_downloaded_and_answered_with_a_file(fake_discord: FakeDiscord) -> None:
    image = png_bytes()
    big = bytes(range(256)) * (9 * 1024 * 1024 // 256)  # 9 MiB, under the 10 MiB upload limit
    slide = fake_discord.add_attachment(image, "slide.png")
    scan = fake_discord.add_attachment(big, "scan.bin")
    assert slide["content_type"] == "image/png" and (slide["width"], slide["height"]) == (32, 24)

    async def scenario() -> None:
        client = plain_client()

        @client.event
        async def on_message(message: discord.Message) -> None:
            if message.author == client.user or client.user not in message.mentions:
                return
            payloads = [await attachment.read() for attachment in message.attachments]
            sizes = " ".join(str(len(payload)) for payload in payloads)
            await message.reply(f"read {sizes}", file=discord.File(io.BytesIO(payloads[0]), "overlay.png"))

        async with fake_discord.connected(client):
            mark = fake_discord.mark()
            posted = fake_discord.post_user_message(
                "what is this?", mention_bot=True, attachments=[slide, scan]
            )
            sent = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark)

        assert sent.json["content"] == f"read {len(image)} {len(big)}"
        assert str(sent.json["message_reference"]["message_id"]) == posted["id"]
        assert sent.files == [("overlay.png", image, "application/octet-stream")]
        reply = sent.response
        assert reply["type"] == 19 and reply["referenced_message"]["id"] == posted["id"]
        (attachment,) = reply["attachments"]
        assert attachment["url"].startswith(fake_discord.cdn_base)
        assert fake_discord.attachment_bytes(attachment) == image
        assert fake_discord.cdn_downloads == [slide["id"], scan["id"]]

    run(scenario())


def test_without_message_content_intent_unmentioned_messages_arrive_blank(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        client = plain_client()
        seen: list[discord.Message] = []

        @client.event
        async def on_message(message: discord.Message) -> None:
            seen.append(message)

        async with fake_discord.connected(client):
            attachment = fake_discord.add_attachment(png_bytes(), "slide.png")
            fake_discord.post_user_message("no mention here", attachments=[attachment])
            await fake_discord.wait_until(lambda: seen or None, what="on_message")

        (message,) = seen
        assert message.content == "" and message.attachments == []

    run(scenario())


def test_thread_from_message_and_validation_errors(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        client = plain_client()
        async with fake_discord.connected(client):
            channel = client.get_channel(int(fake_discord.channel_id))
            assert isinstance(channel, discord.TextChannel)
            async with channel.typing():
                starter = await channel.send("Case 42: thoughts?")
            thread = await starter.create_thread(name="Case 42")
            assert thread.id == starter.id and thread.parent_id == channel.id
            await thread.send("in the thread")
            await fake_discord.wait_until(lambda: fake_discord.messages_in(str(thread.id)) or None)
            with pytest.raises(discord.HTTPException) as empty:
                await channel.send()
            assert empty.value.code == 50006
            with pytest.raises(discord.HTTPException) as too_long:
                await channel.send("x" * 2001)
            assert too_long.value.code == 50035
            with pytest.raises(discord.NotFound):
                await client.fetch_invite("pathology")

    run(scenario())
    assert [m["content"] for m in fake_discord.messages_in(fake_discord.channel_id)] == ["Case 42: thoughts?"]
    assert fake_discord.requests_to("typing")
    (unknown,) = fake_discord.unknown_requests
    assert (unknown.method, unknown.path, unknown.status) == ("GET", "/invites/pathology", 404)


def test_a_bot_exception_fails_the_test_instead_of_timing_out(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        client = plain_client()

        @client.event
        async def on_message(message: discord.Message) -> None:
            raise RuntimeError("model exploded")

        with pytest.raises(BotRaisedError, match="model exploded"):
            async with fake_discord.connected(client):
                fake_discord.post_user_message("hi", mention_bot=True)
                await fake_discord.wait_for_message(timeout=5)

    run(scenario())


# --- application commands, context menus, views, modals ----------------------------------------------


def test_slash_command_with_attachment_defers_then_follows_up_with_a_file(fake_discord: FakeDiscord) -> None:
    image = png_bytes()

    async def scenario() -> None:
        async with fake_discord.connected(EchoBot(fake_discord.guild_id)):
            synced = {
                command["name"]: command for command in fake_discord.synced_commands(fake_discord.guild_id)
            }
            assert set(synced) == {"echo", "note", "Describe attachments"}
            assert [(o["name"], o["type"]) for o in synced["echo"]["options"]] == [
                ("image", 11),
                ("private", 5),
            ]
            assert synced["Describe attachments"]["type"] == 3

            slide = fake_discord.add_attachment(image, "slide.png")
            interaction = fake_discord.invoke_slash_command("echo", {"image": slide})
            deferred = await fake_discord.wait_for_interaction_response(interaction["id"])
            followup = await fake_discord.wait_for_followup(interaction["token"])

            assert deferred.json == {"type": 5}
            assert followup.query["wait"] == "1"
            assert followup.json["content"] == "echo slide.png"
            assert followup.files == [("echo.png", image, "application/octet-stream")]
            original = fake_discord.original_response(interaction["id"])
            assert original is not None and original["id"] == followup.response["id"]
            assert original["content"] == "echo slide.png" and not original["flags"] & FLAG_LOADING
            assert fake_discord.attachment_bytes(original["attachments"][0]) == image

            private = fake_discord.invoke_slash_command("echo", {"image": slide, "private": True})
            answer = await fake_discord.wait_for_interaction_response(private["id"])
            assert answer.json["type"] == 4
            assert answer.json["data"]["flags"] == FLAG_EPHEMERAL
            assert answer.json["data"]["content"] == f"slide.png ({len(image)} bytes)"
            assert not fake_discord.followups(private["token"])

    run(scenario())


def test_message_context_menu_receives_the_target_message_with_attachments(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        async with fake_discord.connected(EchoBot(fake_discord.guild_id)):
            first = fake_discord.add_attachment(png_bytes(), "he.png")
            second = fake_discord.add_attachment(b"x" * 1000, "ki67.tif")
            target = fake_discord.post_user_message("case 7", attachments=[first, second])
            interaction = fake_discord.invoke_message_command("Describe attachments", target)
            answer = await fake_discord.wait_for_interaction_response(interaction["id"])

        assert interaction["data"]["target_id"] == target["id"]
        assert answer.json["data"]["content"] == f"2 attachment(s): he.png={first['size']}, ki67.tif=1000"
        assert answer.json["data"]["flags"] == FLAG_EPHEMERAL

    run(scenario())


def test_an_interaction_acknowledged_too_late_is_unknown(fake_discord: FakeDiscord) -> None:
    fake_discord.interaction_ack_deadline_s = 0.0  # as if the bot had spent 3 s before answering

    async def scenario() -> None:
        async with fake_discord.connected(EchoBot(fake_discord.guild_id), fail_on_client_errors=False):
            interaction = fake_discord.invoke_slash_command("note")
            refused = await fake_discord.wait_for_interaction_response(interaction["id"])
        assert (refused.status, refused.response["code"]) == (404, 10062)

    run(scenario())


def test_button_click_reaches_the_view_callback(fake_discord: FakeDiscord) -> None:
    clicks: list[int] = []

    class ConfirmView(discord.ui.View):
        @discord.ui.button(label="Confirm", custom_id="confirm-label", style=discord.ButtonStyle.success)
        async def confirm(
            self, interaction: discord.Interaction, button: discord.ui.Button[ConfirmView]
        ) -> None:
            clicks.append(interaction.user.id)
            await interaction.response.edit_message(content="Label confirmed", view=None)

    async def scenario() -> None:
        client = plain_client()
        async with fake_discord.connected(client):
            channel = client.get_channel(int(fake_discord.channel_id))
            assert isinstance(channel, discord.TextChannel)
            sent = await channel.send("Confirm label 'carcinoma'?", view=ConfirmView(timeout=30))
            interaction = fake_discord.click_button(str(sent.id), "confirm-label")
            update = await fake_discord.wait_for_interaction_response(interaction["id"])

        assert clicks == [int(fake_discord.default_user["id"])]
        assert update.json["type"] == 7 and update.json["data"]["components"] == []
        stored = fake_discord.message(str(sent.id))
        assert stored["content"] == "Label confirmed" and stored["components"] == []

    run(scenario())


def test_modal_opened_by_a_command_is_submitted(fake_discord: FakeDiscord) -> None:
    async def scenario() -> None:
        async with fake_discord.connected(EchoBot(fake_discord.guild_id)):
            opener = fake_discord.invoke_slash_command("note")
            opened = await fake_discord.wait_for_interaction_response(opener["id"])
            assert opened.json["type"] == 9
            submit = fake_discord.submit_modal(opener, {"note-text": "many mitoses"})
            answer = await fake_discord.wait_for_interaction_response(submit["id"])

        assert answer.json["type"] == 4
        assert answer.json["data"]["content"] == "noted: many mitoses"
        assert answer.json["data"]["flags"] == FLAG_EPHEMERAL

    run(scenario())
