"""Learning end to end: the real bot (discord.py, cogs, services) against the fake Discord, with the
embedded worker running the real tasks on a tiny random checkpoint (NOT PLIP).

A moderator confirms examples with "Confirm label…"; the next answer in that server moves towards the
confirmed label and says so; another server's answer is unchanged; a non-moderator cannot confirm;
after the poster withdraws, their examples are gone and the answer reverts to zero-shot.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_bot
from plipbot.composition import Container
from tests import imagegen
from tests.bot.settings_for_fake import settings_for_fake
from tests.bot.test_bot_e2e import content_of, invoke_sub
from tests.fakediscord import models
from tests.fakediscord.models import FakeWorld
from tests.fakediscord.server import FakeDiscord
from tests.learning.folders import CLASS_COLOURS, textured

pytest_plugins = ["tests.fakediscord.conftest_plugin"]

LABELS = ("tumor", "normal")
FLAG_EPHEMERAL = 64
TIMEOUT = 90


@pytest.fixture
def fake_discord_world() -> FakeWorld:
    """The default "Pathology Lab" plus a second server, "Other Lab", where the pathologist posts too."""
    world = models.default_world()
    pathologist = world.users[-1]
    other_owner = models.user_payload(username="other_owner")
    guild_id = models.snowflake()
    bot_role = models.role_payload(
        name="plipbot",
        position=1,
        permissions=models.BOT_ROLE_PERMISSIONS,
        managed=True,
        bot_id=world.bot_user["id"],
    )
    slides = models.text_channel_payload(guild_id=guild_id, name="slides")
    world.guilds.append(
        models.guild_payload(
            guild_id=guild_id,
            name="Other Lab",
            owner_id=other_owner["id"],
            roles=[bot_role],
            channels=[slides],
            members=[
                models.member_payload(world.bot_user, roles=[bot_role["id"]]),
                models.member_payload(other_owner),
                models.member_payload(pathologist),
            ],
        )
    )
    world.users.insert(0, other_owner)  # the pathologist stays last: the fake's default user
    return world


@pytest.fixture
def container(fake_discord: FakeDiscord, tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Container]:
    settings = settings_for_fake(
        fake_discord,
        discord={"similar_cases": 0, "message_content_intent": False},
        data_dir=tmp_path / "data",
        model={"name": str(tiny_checkpoint)},
        workers={"allow_private_urls": True},  # the fake CDN is on 127.0.0.1
        # The guard's margin has its own tests (test_adapter, test_server_adapters); here any gain will do,
        # so the flow does not hinge on how a random model happens to rank these four images.
        learning={"margin": 0.0},
    )
    c = Container(settings)
    yield c
    c.close()


def image(family: str, seed: int) -> bytes:
    return imagegen.encode(textured(CLASS_COLOURS[family], seed, size=96))


def probabilities(content: str) -> dict[str, float]:
    """Label -> shown probability (percent) from an answer's numbered suggestion lines."""
    found = re.findall(r"^\d+\. \*\*(.+?)\*\* — [<>]?([\d.]+)%", content, flags=re.MULTILINE)
    return {label: float(value) for label, value in found}


def top_label(content: str) -> str:
    shown = probabilities(content)
    assert shown, content
    return next(iter(shown))


class Scenario:
    """The steps the test strings together, each waiting for the bot's visible answer."""

    def __init__(self, fake: FakeDiscord, bot: Any) -> None:
        self.fake = fake
        self.bot = bot
        self.other_channel = fake.channel_named("slides")["id"]

    async def ask(self, data: bytes, name: str, channel_id: str | None = None) -> tuple[Any, str]:
        """Mention the bot with one image; (the post, the bot's answer text)."""
        channel = channel_id or self.fake.channel_id
        attachment = self.fake.add_attachment(data, name, "image/png", channel_id=channel)
        mark = self.fake.mark()
        posted = self.fake.post_user_message(
            "", mention_bot=True, attachments=[attachment], channel_id=channel
        )
        sent = await self.fake.wait_for_message(channel, after=mark, timeout=TIMEOUT)
        return posted, sent

    async def tracked(self, message_id: str) -> None:
        views = self.bot._connection._view_store
        await self.fake.wait_until(
            lambda: views.is_message_tracked(int(message_id)) or None, timeout=10, what="the view registered"
        )

    async def confirm(self, target: Any, label: str, user: Any) -> str:
        """ "Confirm label…" on `target`, then pick `label` in the private select; the bot's final line."""
        menu = self.fake.invoke_message_command("Confirm label…", target, user=user)
        await self.fake.wait_for_interaction_response(menu["id"], timeout=TIMEOUT)
        prompt = self.fake.original_response(menu["id"])
        assert prompt is not None and prompt["flags"] & FLAG_EPHEMERAL
        await self.tracked(prompt["id"])
        choice = self.fake.click_button(
            prompt["id"], "plipbot:confirm:label", user=user, values=[str(LABELS.index(label))]
        )
        done = await self.fake.wait_for_followup(choice["token"], timeout=TIMEOUT)
        return content_of(done)


def test_confirmed_examples_adapt_this_server_only_and_go_with_withdrawal(
    fake_discord: FakeDiscord, container: Container
) -> None:
    owner = fake_discord.world.owner
    guild_id = int(fake_discord.guild_id)
    bot = build_bot(container)

    async def scenario() -> None:
        async with fake_discord.connected(bot):
            steps = Scenario(fake_discord, bot)
            labels = invoke_sub(fake_discord, "labels", "set", {"labels": ", ".join(LABELS)}, user=owner)
            await fake_discord.wait_for_interaction_response(labels["id"], timeout=TIMEOUT)

            query = image("stroma", 900)
            _, first = await steps.ask(query, "query.png")
            zero_shot = first.json["content"]
            assert "Adapted with" not in zero_shot
            zs_label = top_label(zero_shot)
            other = next(label for label in LABELS if label != zs_label)
            _, elsewhere = await steps.ask(query, "query.png", steps.other_channel)

            grant = invoke_sub(fake_discord, "consent", "grant", {})
            await fake_discord.wait_for_interaction_response(grant["id"], timeout=TIMEOUT)

            # Two stroma-like images are confirmed as the label zero-shot does NOT give the query, two
            # lymphocyte-like ones as the label it does: zero-shot is wrong on half the examples, so
            # leave-one-out lets the adapter in.
            posts = [
                await steps.ask(image(family, seed), f"{family}-{seed}.png")
                for family, seed in (("stroma", 1), ("stroma", 2), ("lymphocytes", 3), ("lymphocytes", 4))
            ]

            refused = fake_discord.invoke_message_command("Confirm label…", posts[0][1].response)
            answer = await fake_discord.wait_for_interaction_response(refused["id"], timeout=TIMEOUT)
            assert answer.json["data"]["flags"] == FLAG_EPHEMERAL and "Only moderators" in content_of(answer)
            assert container.examples_store.all_examples(guild_id) == []

            # On the bot's answer (the image it answered) and on the post itself.
            said = [
                await steps.confirm(posts[0][1].response, other, owner),
                await steps.confirm(posts[1][0], other, owner),
                await steps.confirm(posts[2][1].response, zs_label, owner),
                await steps.confirm(posts[3][0], zs_label, owner),
            ]
            assert all("Confirmed" in line for line in said), said
            assert "2 confirmed example(s)" in said[-1]
            kept = container.examples_store.all_examples(guild_id)
            assert len(kept) == 4 and {e.confirmer_id for e in kept} == {int(owner["id"])}

            _, adapted = await steps.ask(query, "query.png")
            text = adapted.json["content"]
            assert "Adapted with 4 confirmed examples from this server." in text
            assert probabilities(text)[other] > probabilities(zero_shot)[other]
            assert top_label(text) == other

            _, elsewhere_again = await steps.ask(query, "query.png", steps.other_channel)
            assert elsewhere_again.json["content"] == elsewhere.json["content"]
            assert "Adapted" not in elsewhere_again.json["content"]

            withdraw = invoke_sub(fake_discord, "consent", "withdraw", {})
            await fake_discord.wait_for_followup(withdraw["token"], timeout=TIMEOUT)
            assert container.examples_store.all_examples(guild_id) == []

            _, reverted = await steps.ask(query, "query.png")
            assert reverted.json["content"] == zero_shot

    asyncio.run(scenario())


def components_of(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["custom_id"]: c for row in message.get("components", []) for c in row["components"]}


def test_review_test_threads_and_moderator_role(fake_discord: FakeDiscord, container: Container) -> None:
    owner = fake_discord.world.owner
    pathologist = fake_discord.default_user
    guild_id = int(fake_discord.guild_id)
    pathologist_role = next(r for r in fake_discord.guild["roles"] if r["name"] == "Pathologist")
    bot = build_bot(container)

    async def scenario() -> None:
        async with fake_discord.connected(bot):
            steps = Scenario(fake_discord, bot)
            labels = invoke_sub(fake_discord, "labels", "set", {"labels": ", ".join(LABELS)}, user=owner)
            await fake_discord.wait_for_interaction_response(labels["id"], timeout=TIMEOUT)
            grant = invoke_sub(fake_discord, "consent", "grant", {})
            await fake_discord.wait_for_interaction_response(grant["id"], timeout=TIMEOUT)

            # A member corrects four answers ("Correct label…" opens a modal).
            corrections = [("stroma", 1, "normal"), ("stroma", 2, "normal"), ("lymphocytes", 3, "tumor")]
            corrections.append(("lymphocytes", 4, "tumor"))
            posts = []
            for family, seed, label in corrections:
                post, answer = await steps.ask(image(family, seed), f"{family}-{seed}.png")
                posts.append(post)
                await steps.tracked(answer.response["id"])
                click = fake_discord.click_button(answer.response["id"], "plipbot:correct")
                await fake_discord.wait_for_interaction_response(click["id"], timeout=TIMEOUT)
                modal = fake_discord.modal_sent(click["id"])
                assert modal is not None
                [field] = components_of(modal)
                submitted = fake_discord.submit_modal(click, {field: label})
                thanks = await fake_discord.wait_for_interaction_response(submitted["id"], timeout=TIMEOUT)
                assert "noted" in content_of(thanks)

            refused = invoke_sub(fake_discord, "labels", "review", {}, user=pathologist)
            answer = await fake_discord.wait_for_interaction_response(refused["id"], timeout=TIMEOUT)
            assert "Only moderators" in content_of(answer)

            review = invoke_sub(fake_discord, "labels", "review", {}, user=owner)
            listed = await fake_discord.wait_for_interaction_response(review["id"], timeout=TIMEOUT)
            assert "4 member correction(s)" in content_of(listed)
            items = await fake_discord.wait_until(
                lambda: (
                    fake_discord.followups(review["token"])
                    if len(fake_discord.followups(review["token"])) == 4
                    else None
                ),
                timeout=TIMEOUT,
                what="four corrections listed",
            )
            assert all(item.json["flags"] & FLAG_EPHEMERAL for item in items)
            assert "says **normal**" in content_of(items[0])
            outcomes = []
            for number, item in enumerate(items):
                message_id = item.response["id"]
                await steps.tracked(message_id)
                kind = "reject" if number == 3 else "approve"
                [custom_id] = [
                    c for c in components_of(item.response) if c.startswith(f"plipbot:review:{kind}:")
                ]
                click = fake_discord.click_button(message_id, custom_id, user=owner)
                if kind == "approve":
                    outcomes.append(
                        content_of(await fake_discord.wait_for_followup(click["token"], timeout=TIMEOUT))
                    )
                else:
                    outcomes.append(content_of(await fake_discord.wait_for_interaction_response(click["id"])))
            assert all("Confirmed" in text for text in outcomes[:3]), outcomes
            assert "Rejected" in outcomes[3]
            kept = container.examples_store.all_examples(guild_id)
            assert sorted(e.label for e in kept) == ["normal", "normal", "tumor"]
            assert {e.origin.value for e in kept} == {"feedback"} and {e.poster_id for e in kept} == {
                int(pathologist["id"])
            }

            # Deleting a post on Discord erases the example confirmed from it.
            fake_discord.delete_user_messages([posts[0]])
            await fake_discord.wait_until(
                lambda: len(container.examples_store.all_examples(guild_id)) == 2 or None,
                timeout=TIMEOUT,
                what="the deleted post's example erased",
            )
            assert int(posts[0]["id"]) not in {
                e.message_id for e in container.examples_store.all_examples(guild_id)
            }

            again = invoke_sub(fake_discord, "labels", "review", {}, user=owner)
            assert "No corrections" in content_of(
                await fake_discord.wait_for_interaction_response(again["id"])
            )

            test = invoke_sub(fake_discord, "labels", "test", {}, user=owner)
            report = await fake_discord.wait_for_followup(test["token"], timeout=TIMEOUT)
            text = content_of(report)
            assert "2 confirmed example(s)" in text and "Zero-shot: weighted F1" in text and "Adapted" in text
            assert [name for name, *_ in report.files] == ["confusion-zero-shot.png", "confusion-adapted.png"]
            assert all(data.startswith(b"\x89PNG") for _, data, *_ in report.files)

            off = invoke_sub(
                fake_discord, "labels", "learning", {"state": "off", "where": "channel"}, user=owner
            )
            assert "off" in content_of(await fake_discord.wait_for_interaction_response(off["id"]))
            assert container.examples_store.learning_switch(guild_id, int(fake_discord.channel_id)) is False

            # A moderator role lets its members confirm.
            _, answer = await steps.ask(image("stroma", 5), "stroma-5.png")
            before = fake_discord.invoke_message_command("Confirm label…", answer.response)
            assert "Only moderators" in content_of(
                await fake_discord.wait_for_interaction_response(before["id"])
            )
            role = invoke_sub(fake_discord, "bot", "moderator-role", {"role": pathologist_role}, user=owner)
            assert "may now configure" in content_of(
                await fake_discord.wait_for_interaction_response(role["id"])
            )
            after = fake_discord.invoke_message_command("Confirm label…", answer.response)
            prompt = content_of(await fake_discord.wait_for_interaction_response(after["id"]))
            assert "Which label" in prompt
            # ... and a label outside the channel's set can be typed.
            chooser = fake_discord.original_response(after["id"])
            assert chooser is not None
            await steps.tracked(chooser["id"])
            typed = fake_discord.click_button(chooser["id"], "plipbot:confirm:typed")
            await fake_discord.wait_for_interaction_response(typed["id"], timeout=TIMEOUT)
            modal = fake_discord.modal_sent(typed["id"])
            assert modal is not None
            [field] = components_of(modal)
            submitted = fake_discord.submit_modal(typed, {field: "  Stroma  "})
            done = content_of(await fake_discord.wait_for_followup(submitted["token"], timeout=TIMEOUT))
            assert "Confirmed **Stroma**" in done and "not in this channel's label set" in done
            assert "Stroma" in {e.label for e in container.examples_store.all_examples(guild_id)}

            threads = invoke_sub(fake_discord, "bot", "threads", {"state": "on"}, user=owner)
            assert "thread" in content_of(await fake_discord.wait_for_interaction_response(threads["id"]))
            mark = fake_discord.mark()
            attachment = fake_discord.add_attachment(image("stroma", 6), "in-thread.png", "image/png")
            fake_discord.post_user_message("", mention_bot=True, attachments=[attachment])
            await fake_discord.wait_until(
                lambda: fake_discord.requests_to("start_thread_from_message", after=mark) or None,
                timeout=TIMEOUT,
                what="the answer's thread",
            )

            # The bot's removal from the server erases the server's examples and switches.
            assert container.examples_store.all_examples(guild_id)
            fake_discord.remove_bot_from_guild()
            await fake_discord.wait_until(
                lambda: container.examples_store.all_examples(guild_id) == [] or None,
                timeout=TIMEOUT,
                what="the server's examples erased",
            )
            assert container.examples_store.learning_switch(guild_id, int(fake_discord.channel_id)) is None

    asyncio.run(scenario())
