"""Privacy through Discord: the real bot against the fake Discord, the embedded worker running the real
tasks (tiny random checkpoint, NOT PLIP) on the embedded store.

Sharing off hides a server's cases at once and re-scopes them; a deleted message (single or bulk)
takes its case and thumbnail with it; the bot's removal turns sharing off; a withdrawal that a failing
store cut short is finished by the sweep, and the user is told by direct message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_bot
from plipbot.composition import Container
from plipbot.errors import ServiceUnavailableError
from store.records import SearchFilter
from tests import imagegen
from tests.bot.settings_for_fake import embedded_settings_for_fake
from tests.bot.test_bot_e2e import content_of, invoke_sub
from tests.fakediscord.server import FakeDiscord
from tests.ingest.test_pipeline import crops

pytest_plugins = ["tests.fakediscord.conftest_plugin"]


@pytest.fixture
def container(fake_discord: FakeDiscord, tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Container]:
    settings = embedded_settings_for_fake(
        fake_discord, tiny_checkpoint, tmp_path / "data", discord={"erasure_sweep_s": 0.3}
    )
    c = Container(settings)
    yield c
    c.close()


def test_sharing_deletion_removal_and_an_interrupted_withdrawal(
    fake_discord: FakeDiscord, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = fake_discord.world.owner
    guild_id = int(fake_discord.guild_id)
    poster = fake_discord.default_user

    async def scenario() -> None:
        async with fake_discord.connected(build_bot(container)):
            for group, sub, options in (("ingest", "enable", {}),):
                answer = invoke_sub(fake_discord, group, sub, options, user=owner)
                await fake_discord.wait_for_interaction_response(answer["id"])
            on = fake_discord.invoke_slash_command("sharing", {"enabled": True}, user=owner)
            await fake_discord.wait_for_interaction_response(on["id"])
            grant = invoke_sub(fake_discord, "consent", "grant", {"scope": "shared"})
            await fake_discord.wait_for_interaction_response(grant["id"])

            store = container.case_store
            posts = []
            for n, picture in enumerate(crops()[:4]):  # images the tiny model keeps apart
                image = fake_discord.add_attachment(imagegen.encode(picture), f"case{n}.png", "image/png")
                posts.append(fake_discord.post_user_message(f"case {n} marker", attachments=[image]))
            await fake_discord.wait_until(lambda: store.count() == 4 or None, timeout=60, what="4 cases")
            everyone = SearchFilter(guild_id=None, sharing_guilds=frozenset({guild_id}))
            assert store.count(everyone) == 4  # shared, and the server shares

            # Sharing off: the reply says what is true, and the stored scope follows.
            off = fake_discord.invoke_slash_command("sharing", {"enabled": False}, user=owner)
            reply = content_of(await fake_discord.wait_for_interaction_response(off["id"]))
            assert "no longer see" in reply and "stay private" not in reply
            assert container.guild_config.sharing_guilds() == frozenset()
            await fake_discord.wait_until(
                lambda: store.count(everyone) == 0 or None, timeout=30, what="cases re-scoped to the server"
            )
            # Back on: cases of members whose consent is 'shared' are shared again.
            on = fake_discord.invoke_slash_command("sharing", {"enabled": True}, user=owner)
            await fake_discord.wait_for_interaction_response(on["id"])
            await fake_discord.wait_until(
                lambda: store.count(everyone) == 4 or None, timeout=30, what="re-shared"
            )

            # Deleted on Discord: one message, then a bulk purge of two.
            fake_discord.delete_user_messages([posts[0]])
            await fake_discord.wait_until(lambda: store.count() == 3 or None, timeout=30, what="one deleted")
            fake_discord.delete_user_messages(posts[1:3])
            await fake_discord.wait_until(lambda: store.count() == 1 or None, timeout=30, what="bulk deleted")
            assert len(list(container.thumbnails.ids())) == 1

            # A withdrawal interrupted by a store that fails once: told now, finished by the sweep, DM'd.
            feedback = container.feedback
            real_forget = feedback.forget_user
            failures = [ServiceUnavailableError("The bot database is unreachable; try again later.")]

            def fails_once(user_id: int, guild_id: int | None = None) -> int:
                if failures:
                    raise failures.pop()
                return real_forget(user_id, guild_id)

            monkeypatch.setattr(feedback, "forget_user", fails_once)
            withdraw = invoke_sub(fake_discord, "consent", "withdraw", {})
            told = await fake_discord.wait_for_followup(withdraw["token"], timeout=60)
            assert "direct message when it is done" in told.json["content"]
            await fake_discord.wait_until(
                lambda: fake_discord.dm_messages(poster["id"]) or None, timeout=30, what="the erasure DM"
            )
            [dm] = fake_discord.dm_messages(poster["id"])
            assert "has now been deleted" in dm["content"]
            assert store.count() == 0 and list(container.thumbnails.ids()) == []
            assert container.consent_ledger.pending_erasures() == []
            ledger = container.consent_ledger
            await fake_discord.wait_until(  # marked once the DM went out: never told twice
                lambda: ledger.unnotified_erasures() == [] or None, timeout=10, what="the notice recorded"
            )

            # Removed from the server: sharing goes off (its cases leave the shared corpus).
            fake_discord.remove_bot_from_guild()
            await fake_discord.wait_until(
                lambda: (not container.guild_config.sharing(guild_id)) or None, timeout=10, what="sharing off"
            )

    asyncio.run(scenario())


def test_an_erasure_notice_to_a_deleted_account_is_recorded_not_retried_forever(
    fake_discord: FakeDiscord, container: Container
) -> None:
    """A user who deleted their Discord account (404 Unknown User) can never be told: the sweep must
    record the notice as settled, not try again every round for ever."""
    ledger = container.consent_ledger
    gone_user = 424242424242424242  # no such user in the fake Discord
    erasure = ledger.open_erasure(gone_user, int(fake_discord.guild_id))
    assert ledger.complete_erasure(erasure.id, 0, notified=False)

    async def scenario() -> None:
        async with fake_discord.connected(build_bot(container)):
            await fake_discord.wait_until(
                lambda: ledger.unnotified_erasures() == [] or None, timeout=15, what="the notice settled"
            )

    asyncio.run(scenario())
