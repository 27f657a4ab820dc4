"""bot.ingest_notice (the poster's DM after a held or rejected post, unit) and the same DM end to end:
the real bot against the fake Discord, the embedded worker running the real ingest task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import build_bot
from bot.ingest_notice import ingest_notice
from plipbot.composition import Container
from tests import imagegen
from tests.bot.settings_for_fake import embedded_settings_for_fake
from tests.bot.test_bot_e2e import invoke_sub
from tests.fakediscord.server import FakeDiscord

pytest_plugins = ["tests.fakediscord.conftest_plugin"]


def test_no_notice_when_everything_went_in() -> None:
    assert ingest_notice([("ingested", ""), ("duplicate", "repost of an existing case")], "#cases") is None
    assert ingest_notice([("no_consent", "the author has not consented")], "#cases") is None
    assert ingest_notice([], "#cases") is None


def test_one_short_notice_per_post() -> None:
    notice = ingest_notice(
        [
            ("rejected", "caption contains a likely identifier (record number)"),
            ("held", "text on the image may contain an identifier (name)"),
            ("ingested", ""),
        ],
        "<#42>",
    )
    assert notice is not None and len(notice) < 400
    assert notice.startswith("2 of your 3 images in <#42> were not added")
    assert "record number" in notice and "(name)" in notice and "edit out any patient details" in notice


def test_the_pipelines_reasons_pass_unchanged() -> None:
    for reason in (
        "caption contains a likely identifier (date of birth, record number)",
        "tags contain a likely identifier (name)",
        "caption and tags may contain an identifier (address, name)",
    ):
        notice = ingest_notice([("rejected", reason)], "#cases")
        assert notice is not None and reason in notice


def test_a_reason_that_quotes_an_identifier_is_not_repeated() -> None:
    notice = ingest_notice([("rejected", "could not read John_Smith_MRN12345678.png")], "#cases")
    assert notice is not None
    assert "Smith" not in notice and "12345678" not in notice
    assert notice.startswith("Your image in #cases was not added")


def test_other_rejections_are_explained_without_asking_for_edits() -> None:
    notice = ingest_notice([("rejected", "not a pathology image (score 0.12)")], "#cases")
    assert notice is not None and "not a pathology image" in notice and "patient" not in notice


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def container(fake_discord: FakeDiscord, tiny_checkpoint: Path, tmp_path: Path) -> Iterator[Container]:
    c = Container(embedded_settings_for_fake(fake_discord, tiny_checkpoint, tmp_path / "data"))
    yield c
    c.close()


def test_a_post_with_an_identifier_gets_one_dm_that_does_not_repeat_it(
    fake_discord: FakeDiscord, container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    owner = fake_discord.world.owner
    poster = fake_discord.default_user
    tissue = imagegen.encode(imagegen.ihc().crop((0, 0, 200, 200)))

    async def scenario() -> None:
        async with fake_discord.connected(build_bot(container)):
            enable = invoke_sub(fake_discord, "ingest", "enable", {}, user=owner)
            await fake_discord.wait_for_interaction_response(enable["id"])
            grant = invoke_sub(fake_discord, "consent", "grant", {})
            await fake_discord.wait_for_interaction_response(grant["id"])

            first = fake_discord.add_attachment(tissue, "a.png", "image/png")
            second = fake_discord.add_attachment(tissue, "b.png", "image/png")
            fake_discord.post_user_message(
                "Joanna Kowalczyk, 54F, MRN 99887766, tubular adenoma", attachments=[first, second]
            )
            dms = await fake_discord.wait_until(
                lambda: fake_discord.dm_messages(poster["id"]) or None, timeout=60, what="the DM"
            )
            await asyncio.sleep(0.5)  # a second DM for the same post would arrive by now
            dms = fake_discord.dm_messages(poster["id"])
            assert len(dms) == 1
            text = dms[0]["content"]
            assert "were not added to the case library" in text and "record number" in text
            for secret in ("Joanna", "Kowalczyk", "99887766"):
                assert secret not in text
            assert container.case_store.count() == 0

            fine = fake_discord.add_attachment(tissue, "c.png", "image/png")
            fake_discord.post_user_message("Tubular adenoma, H&E 20x #gipath", attachments=[fine])
            await fake_discord.wait_until(
                lambda: container.case_store.count() == 1 or None, timeout=60, what="the clean post ingested"
            )
            await asyncio.sleep(0.5)
            assert len(fake_discord.dm_messages(poster["id"])) == 1  # no DM for a post that went in

    with caplog.at_level(logging.INFO):  # the production level (discord.py debug logs echo payloads)
        asyncio.run(scenario())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in ("Joanna", "Kowalczyk", "99887766"):
        assert secret not in logged
