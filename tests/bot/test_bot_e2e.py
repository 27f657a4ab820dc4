"""The real bot (discord.py client, cogs, services) against the fake Discord, with the embedded worker
running the real tasks on a tiny random checkpoint (NOT PLIP) and the embedded store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_bot
from plipbot.composition import Container
from tests import imagegen
from tests.bot.settings_for_fake import embedded_settings_for_fake
from tests.fakediscord.server import FakeDiscord

pytest_plugins = ["tests.fakediscord.conftest_plugin"]

FLAG_EPHEMERAL = 64


@pytest.fixture
def container(fake_discord: FakeDiscord, tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Container]:
    c = Container(embedded_settings_for_fake(fake_discord, tiny_checkpoint, tmp_path / "data"))
    yield c
    c.close()


def tissue(x: int, y: int) -> bytes:
    return imagegen.encode(imagegen.ihc().crop((x, y, x + 200, y + 200)))


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def content_of(request: object) -> str:
    data = request.json  # type: ignore[attr-defined]
    return (data.get("data") or data).get("content") or ""


def test_mention_with_image_gets_suggestions_chart_and_feedback(
    fake_discord: FakeDiscord, container: Container
) -> None:
    bot = build_bot(container)

    async def scenario() -> None:
        async with fake_discord.connected(bot):
            att = fake_discord.add_attachment(tissue(0, 0), "biopsy.png", "image/png")
            mark = fake_discord.mark()
            posted = fake_discord.post_user_message("what is this?", mention_bot=True, attachments=[att])
            sent = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=60)
            text = sent.json["content"]
            assert str(sent.json["message_reference"]["message_id"]) == posted["id"]
            assert "local checkpoint" in text and "not PLIP" in text  # random weights are never called PLIP
            assert "not a diagnosis" in text
            assert "%" in text and "No similar cases" in text
            names = [f[0] for f in sent.files]
            assert names == ["suggestions.png"] and sent.files[0][1].startswith(b"\x89PNG")
            assert sent.json["allowed_mentions"]["parse"] == []
            buttons = [c["custom_id"] for row in sent.json["components"] for c in row["components"]]
            assert buttons == ["plipbot:helpful", "plipbot:wrong", "plipbot:correct"]

            # The fake records the upload before discord.py has read the reply and registered the view.
            views = bot._connection._view_store
            await fake_discord.wait_until(lambda: views.is_message_tracked(int(sent.response["id"])) or None)
            click = fake_discord.click_button(sent.response["id"], "plipbot:helpful")
            thanks = await fake_discord.wait_for_interaction_response(click["id"])
            assert thanks.json["data"]["flags"] == FLAG_EPHEMERAL
            rows = container_feedback(container)
            assert rows and rows[0]["kind"] == "helpful" and rows[0]["answer_id"] == int(sent.response["id"])

            mark = fake_discord.mark()
            fake_discord.post_user_message("signet ring cell carcinoma", mention_bot=True)
            search = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=30)
            assert "No similar cases" in search.json["content"]

            doc = fake_discord.add_attachment(b"%PDF-1.4 report", "report.pdf", "application/pdf")
            mark = fake_discord.mark()
            fake_discord.post_user_message("and this", mention_bot=True, attachments=[doc])
            refused = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=30)
            assert "not an image" in refused.json["content"] and len(refused.json["content"]) < 200

    run(scenario())


def container_feedback(container: Container) -> list[dict[str, object]]:
    return [row.as_dict() for row in container.feedback.export()]


def test_slash_commands_and_context_menus(fake_discord: FakeDiscord, container: Container) -> None:
    async def scenario() -> None:
        async with fake_discord.connected(build_bot(container)):
            synced = {c["name"] for c in fake_discord.synced_commands(fake_discord.guild_id)}
            assert {"suggest", "similar", "labels", "bot", "ingest", "sharing", "consent"} <= synced
            assert {"Suggest labels", "Find similar cases"} <= synced

            slide = fake_discord.add_attachment(tissue(300, 0), "slide.png", "image/png")
            interaction = fake_discord.invoke_slash_command(
                "suggest", {"image": slide, "labels": "benign, malignant"}
            )
            deferred = await fake_discord.wait_for_interaction_response(interaction["id"])
            followup = await fake_discord.wait_for_followup(interaction["token"], timeout=60)
            assert deferred.json["type"] == 5
            assert "benign" in followup.json["content"] and "malignant" in followup.json["content"]
            assert [f[0] for f in followup.files] == ["suggestions.png"]

            neither = fake_discord.invoke_slash_command("similar", {})
            answer = await fake_discord.wait_for_interaction_response(neither["id"])
            assert answer.json["data"][
                "flags"
            ] == FLAG_EPHEMERAL and "either an image or a query" in content_of(answer)

            query = fake_discord.invoke_slash_command("similar", {"query": "mucinous adenocarcinoma"})
            found = await fake_discord.wait_for_followup(query["token"], timeout=30)
            assert "No similar cases" in found.json["content"]

            plain = fake_discord.post_user_message("no picture here")
            menu = fake_discord.invoke_message_command("Find similar cases", plain)
            none = await fake_discord.wait_for_interaction_response(menu["id"])
            assert "no image" in content_of(none)

            dup = fake_discord.add_attachment(tissue(0, 300), "x.png", "image/png")
            with_image = fake_discord.post_user_message("look", attachments=[dup])
            menu = fake_discord.invoke_message_command("Suggest labels", with_image)
            result = await fake_discord.wait_for_followup(menu["token"], timeout=60)
            assert "%" in result.json["content"]

    run(scenario())


def test_only_moderators_change_labels(fake_discord: FakeDiscord, container: Container) -> None:
    owner = fake_discord.world.owner

    async def scenario_with_groups() -> None:
        async with fake_discord.connected(build_bot(container)):
            refused = invoke_sub(fake_discord, "labels", "set", {"labels": "tumor, normal"})
            answer = await fake_discord.wait_for_interaction_response(refused["id"])
            assert answer.json["data"]["flags"] == FLAG_EPHEMERAL and "Only moderators" in content_of(answer)

            accepted = invoke_sub(fake_discord, "labels", "set", {"labels": "tumor, normal"}, user=owner)
            ok = await fake_discord.wait_for_interaction_response(accepted["id"])
            assert "tumor, normal" in content_of(ok)

            att = fake_discord.add_attachment(tissue(300, 300), "t.png", "image/png")
            mark = fake_discord.mark()
            fake_discord.post_user_message("", mention_bot=True, attachments=[att])
            sent = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=60)
            assert "tumor" in sent.json["content"] and "normal" in sent.json["content"]

            listing = invoke_sub(fake_discord, "labels", "list", {})
            shown = await fake_discord.wait_for_interaction_response(listing["id"])
            assert "tumor, normal" in content_of(shown) and "(server)" in content_of(shown)

    run(scenario_with_groups())


def invoke_sub(
    fake: FakeDiscord, group: str, sub: str, options: dict[str, object], user: object = None
) -> dict:
    """A group subcommand interaction (`/group sub ...`), built on the fake's slash-command helper."""
    from tests.fakediscord import models

    return fake.invoke_slash_command(group, {sub: models.SubcommandOptions(options)}, user=user)  # type: ignore[arg-type]


def test_consent_ingest_similar_cases_and_withdrawal(fake_discord: FakeDiscord, container: Container) -> None:
    owner = fake_discord.world.owner

    async def scenario() -> None:
        async with fake_discord.connected(build_bot(container)):
            enable = invoke_sub(fake_discord, "ingest", "enable", {}, user=owner)
            await fake_discord.wait_for_interaction_response(enable["id"])

            before = fake_discord.add_attachment(tissue(0, 0), "early.png", "image/png")
            fake_discord.post_user_message("posted before consenting", attachments=[before])
            grant = invoke_sub(fake_discord, "consent", "grant", {})
            granted = await fake_discord.wait_for_interaction_response(grant["id"])
            assert "Thank you" in content_of(granted)

            case = fake_discord.add_attachment(tissue(0, 0), "adenoma.png", "image/png")
            posted = fake_discord.post_user_message(
                "Tubular adenoma, low-grade dysplasia", attachments=[case]
            )
            store = container.case_store
            await fake_discord.wait_until(
                lambda: store.count() == 1 or None, timeout=60, what="the case ingested"
            )

            query = fake_discord.add_attachment(tissue(0, 0), "query.png", "image/png")
            mark = fake_discord.mark()
            fake_discord.post_user_message("similar?", mention_bot=True, attachments=[query], author=owner)
            sent = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=60)
            text = sent.json["content"]
            assert "Tubular adenoma" in text and posted["id"] in text  # caption and jump link
            assert [f[0] for f in sent.files] == ["suggestions.png", "similar-cases.png"]

            withdraw = invoke_sub(fake_discord, "consent", "withdraw", {})
            done = await fake_discord.wait_for_followup(withdraw["token"], timeout=60)
            assert "1 case(s)" in done.json["content"]
            assert store.count() == 0 and list(container.thumbnails.ids()) == []

            mark = fake_discord.mark()
            fake_discord.post_user_message("again?", mention_bot=True, attachments=[query], author=owner)
            again = await fake_discord.wait_for_message(fake_discord.channel_id, after=mark, timeout=60)
            assert (
                "Tubular adenoma" not in again.json["content"] and "No similar cases" in again.json["content"]
            )

    run(scenario())
