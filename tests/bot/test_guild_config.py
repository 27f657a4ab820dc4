"""Guild configuration: defaults, precedence, validation, audit, durability and races, on both backends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.guild_config import (
    ConfigAction,
    GuildConfigStore,
    GuildSettings,
    LabelSource,
    bot_database_url,
)
from model.presets import DEFAULT_PRESET, get_preset
from model.zeroshot import MAX_LABELS
from plipbot.errors import BotStoreError, LabelSetError, PlipbotError, ServiceUnavailableError
from plipbot.settings import LedgerSettings, load_settings

GUILD = 900_000_000_000_000_001
OTHER_GUILD = 900_000_000_000_000_002
CHANNEL = 800_000_000_000_000_001
OTHER_CHANNEL = 800_000_000_000_000_002
MOD = 700_000_000_000_000_001
USER = 111_111_111_111_111_111
ROLE = 600_000_000_000_000_001

TISSUE = "An H&E image of {} tissue."


def test_unconfigured_server_has_private_useful_defaults(config_store: GuildConfigStore) -> None:
    label_set, source = config_store.effective_label_set(GUILD, CHANNEL)
    assert label_set == get_preset(DEFAULT_PRESET)
    assert source is LabelSource.DEFAULT_PRESET
    assert f"from the {source}" == "from the default preset"  # reads as text in replies

    assert config_store.bot_enabled(GUILD, CHANNEL)
    assert not config_store.ingest_enabled(GUILD, CHANNEL)
    assert not config_store.sharing(GUILD)
    assert not config_store.threads(GUILD)
    assert config_store.moderator_role(GUILD) is None
    assert config_store.guild_settings(GUILD) == GuildSettings(
        guild_id=GUILD, bot_enabled=True, sharing=False, threads=False, moderator_role_id=None
    )
    assert config_store.audit(GUILD) == []  # reading creates nothing


def test_channel_override_beats_server_set_beats_default_preset(config_store: GuildConfigStore) -> None:
    config_store.set_labels(GUILD, ["benign", "malignant"], actor_id=MOD)
    config_store.set_labels(GUILD, ["tumor", "normal"], channel_id=CHANNEL, actor_id=MOD)

    channel_set, channel_source = config_store.effective_label_set(GUILD, CHANNEL)
    assert (channel_set.texts, channel_source) == (["tumor", "normal"], LabelSource.CHANNEL)
    other_set, other_source = config_store.effective_label_set(GUILD, OTHER_CHANNEL)
    assert (other_set.texts, other_source) == (["benign", "malignant"], LabelSource.SERVER)
    assert config_store.effective_label_set(OTHER_GUILD, CHANNEL)[1] == LabelSource.DEFAULT_PRESET

    assert config_store.clear_channel_override(GUILD, CHANNEL, actor_id=MOD)
    assert not config_store.clear_channel_override(GUILD, CHANNEL, actor_id=MOD)  # nothing left to clear
    assert config_store.effective_label_set(GUILD, CHANNEL)[1] == LabelSource.SERVER

    assert config_store.clear_server_labels(GUILD, actor_id=MOD)
    assert config_store.effective_label_set(GUILD, CHANNEL) == (
        get_preset(DEFAULT_PRESET),
        LabelSource.DEFAULT_PRESET,
    )


def test_set_labels_keeps_current_prompts_unless_told(config_store: GuildConfigStore) -> None:
    default_templates = get_preset(DEFAULT_PRESET).labels[0].templates
    kept = config_store.set_labels(GUILD, [" colon ", "liver"], actor_id=MOD)
    assert kept.texts == ["colon", "liver"]  # trimmed
    assert all(label.templates == default_templates for label in kept.labels)

    explicit = config_store.set_labels(GUILD, ["colon"], templates=[TISSUE], actor_id=MOD)
    assert explicit.labels[0].templates == (TISSUE,)
    cleared = config_store.set_labels(GUILD, ["colon"], templates=[], actor_id=MOD)
    assert cleared.labels[0].templates == ()  # the model's default template
    assert config_store.effective_label_set(GUILD, CHANNEL)[0] == cleared


def test_add_labels_starts_from_what_the_scope_uses_now(config_store: GuildConfigStore) -> None:
    preset = get_preset(DEFAULT_PRESET)
    server = config_store.add_labels(GUILD, ["melanoma"], actor_id=MOD)
    assert server.texts == [*preset.texts, "melanoma"]
    assert server.labels[-1].templates == preset.labels[0].templates  # prompted like the others

    channel = config_store.add_labels(GUILD, ["sarcoma"], channel_id=CHANNEL, actor_id=MOD)
    assert channel.texts == [*preset.texts, "melanoma", "sarcoma"]
    assert config_store.effective_label_set(GUILD, OTHER_CHANNEL)[0].texts == server.texts


def test_remove_labels_names_unknown_ones_and_changes_nothing(config_store: GuildConfigStore) -> None:
    config_store.set_labels(GUILD, ["benign", "malignant", "normal"], actor_id=MOD)

    with pytest.raises(LabelSetError, match="'carcinoma', 'sarcoma'"):
        config_store.remove_labels(GUILD, ["normal", "carcinoma", "sarcoma"], actor_id=MOD)
    assert config_store.effective_label_set(GUILD, CHANNEL)[0].texts == ["benign", "malignant", "normal"]

    remaining = config_store.remove_labels(GUILD, ["NORMAL"], actor_id=MOD)  # case-insensitive
    assert remaining.texts == ["benign", "malignant"]
    with pytest.raises(LabelSetError, match="empty"):
        config_store.remove_labels(GUILD, ["benign", "malignant"], actor_id=MOD)


@pytest.mark.parametrize(
    ("labels", "templates", "message"),
    [
        ([], None, "empty"),
        ([f"label {i}" for i in range(MAX_LABELS + 1)], None, "Too many"),
        (["x" * 101], None, "longer than"),
        (["Colon", "colon"], None, "twice"),
        (["  "], None, "empty"),
        (["colon"], ["no placeholder"], "exactly one"),
        (["colon"], ["{} and {}"], "exactly one"),
    ],
)
def test_invalid_label_sets_are_refused_and_not_stored(
    config_store: GuildConfigStore, labels: list[str], templates: list[str] | None, message: str
) -> None:
    with pytest.raises(LabelSetError, match=message):
        config_store.set_labels(GUILD, labels, templates=templates, channel_id=CHANNEL, actor_id=MOD)
    assert config_store.effective_label_set(GUILD, CHANNEL)[1] == LabelSource.DEFAULT_PRESET
    assert config_store.audit(GUILD) == []


def test_add_refuses_duplicates_of_existing_labels(config_store: GuildConfigStore) -> None:
    config_store.set_labels(GUILD, ["benign", "malignant"], actor_id=MOD)
    with pytest.raises(LabelSetError, match="twice"):
        config_store.add_labels(GUILD, ["Benign"], actor_id=MOD)


def test_use_preset_and_set_templates(config_store: GuildConfigStore) -> None:
    kather = config_store.use_preset(GUILD, "kather", channel_id=CHANNEL, actor_id=MOD)
    assert kather == get_preset("kather")
    assert config_store.effective_label_set(GUILD, CHANNEL) == (kather, LabelSource.CHANNEL)

    with pytest.raises(LabelSetError, match="Unknown preset 'nope'"):
        config_store.use_preset(GUILD, "nope", actor_id=MOD)

    retemplated = config_store.set_templates(
        GUILD, [TISSUE, "A slide of {}."], channel_id=CHANNEL, actor_id=MOD
    )
    assert retemplated.name == "kather"
    assert retemplated.texts == kather.texts
    assert {label.templates for label in retemplated.labels} == {(TISSUE, "A slide of {}.")}
    with pytest.raises(LabelSetError, match="exactly one"):
        config_store.set_templates(GUILD, ["no placeholder"], channel_id=CHANNEL, actor_id=MOD)


def test_bot_enable_disable_per_channel_and_server(config_store: GuildConfigStore) -> None:
    assert config_store.set_bot_enabled(GUILD, False, channel_id=CHANNEL, actor_id=MOD)
    assert not config_store.set_bot_enabled(GUILD, False, channel_id=CHANNEL, actor_id=MOD)  # no-op
    assert not config_store.bot_enabled(GUILD, CHANNEL)
    assert config_store.bot_enabled(GUILD, OTHER_CHANNEL)

    # Server-wide disable is a kill switch: it drops channel exceptions; channels can then opt back in.
    assert config_store.set_bot_enabled(GUILD, False, actor_id=MOD)
    assert not config_store.bot_enabled(GUILD, OTHER_CHANNEL)
    config_store.set_bot_enabled(GUILD, True, channel_id=CHANNEL, actor_id=MOD)
    assert config_store.bot_enabled(GUILD, CHANNEL)
    assert not config_store.bot_enabled(GUILD, OTHER_CHANNEL)

    assert config_store.set_bot_enabled(GUILD, True, actor_id=MOD)
    assert config_store.bot_enabled(GUILD, OTHER_CHANNEL)
    assert config_store.bot_enabled(OTHER_GUILD, CHANNEL)
    last = config_store.audit(GUILD)[-1]
    assert last.action is ConfigAction.BOT_ENABLED
    assert last.detail == {"value": True, "previous": False, "channel_exceptions_cleared": 1}


def test_ingest_is_opt_in_per_channel_and_off_where_the_bot_is_off(config_store: GuildConfigStore) -> None:
    assert config_store.set_ingest_enabled(GUILD, CHANNEL, True, actor_id=MOD)
    assert not config_store.set_ingest_enabled(GUILD, CHANNEL, True, actor_id=MOD)
    assert config_store.ingest_enabled(GUILD, CHANNEL)
    assert not config_store.ingest_enabled(GUILD, OTHER_CHANNEL)
    assert not config_store.ingest_enabled(OTHER_GUILD, CHANNEL)

    config_store.set_bot_enabled(GUILD, False, channel_id=CHANNEL, actor_id=MOD)
    assert not config_store.ingest_enabled(GUILD, CHANNEL)
    config_store.set_bot_enabled(GUILD, True, channel_id=CHANNEL, actor_id=MOD)
    assert config_store.ingest_enabled(GUILD, CHANNEL)  # the ingest switch itself was kept

    config_store.set_ingest_enabled(GUILD, CHANNEL, False, actor_id=MOD)
    assert not config_store.ingest_enabled(GUILD, CHANNEL)


def test_server_switches_and_their_audit(config_store: GuildConfigStore) -> None:
    before = datetime.now(UTC)
    assert config_store.set_sharing(GUILD, True, actor_id=MOD)
    assert not config_store.set_sharing(GUILD, True, actor_id=MOD)  # no-op, not audited
    assert config_store.set_threads(GUILD, True, actor_id=MOD)
    assert config_store.set_moderator_role(GUILD, ROLE, actor_id=MOD)
    assert config_store.guild_settings(GUILD) == GuildSettings(
        guild_id=GUILD, bot_enabled=True, sharing=True, threads=True, moderator_role_id=ROLE
    )
    assert config_store.set_moderator_role(GUILD, None, actor_id=USER)
    assert config_store.moderator_role(GUILD) is None
    assert not config_store.sharing(OTHER_GUILD)

    changes = config_store.audit(GUILD)
    assert [change.action for change in changes] == [
        ConfigAction.SHARING,
        ConfigAction.THREADS,
        ConfigAction.MODERATOR_ROLE,
        ConfigAction.MODERATOR_ROLE,
    ]
    assert [change.actor_id for change in changes] == [MOD, MOD, MOD, USER]
    assert changes[-1].detail == {"value": None, "previous": ROLE}
    assert all(before <= change.at <= datetime.now(UTC) and change.at.tzinfo is UTC for change in changes)
    assert all(change.channel_id is None for change in changes)
    assert config_store.audit(GUILD, limit=2) == changes[-2:]
    assert config_store.audit(OTHER_GUILD) == []


def test_label_changes_are_audited_with_scope_and_actor(config_store: GuildConfigStore) -> None:
    config_store.use_preset(GUILD, "kather", actor_id=MOD)
    config_store.add_labels(GUILD, ["necrosis"], channel_id=CHANNEL, actor_id=USER)
    config_store.clear_channel_override(GUILD, CHANNEL, actor_id=MOD)
    changes = config_store.audit(GUILD)
    assert [(c.action, c.channel_id, c.actor_id) for c in changes] == [
        (ConfigAction.USE_PRESET, None, MOD),
        (ConfigAction.ADD_LABELS, CHANNEL, USER),
        (ConfigAction.CLEAR_LABELS, CHANNEL, MOD),
    ]
    assert changes[0].detail == {"preset": "kather"}
    assert changes[1].detail == {"labels": ["necrosis"]}


def test_configuration_survives_a_new_store(bot_db_url: str) -> None:
    with GuildConfigStore(bot_db_url) as store:
        store.set_labels(GUILD, ["benign", "malignant"], templates=[TISSUE], actor_id=MOD)
        store.use_preset(GUILD, "wsss4luad", channel_id=CHANNEL, actor_id=MOD)
        store.set_ingest_enabled(GUILD, CHANNEL, True, actor_id=MOD)
        store.set_bot_enabled(GUILD, False, channel_id=OTHER_CHANNEL, actor_id=MOD)
        store.set_sharing(GUILD, True, actor_id=MOD)
        store.set_moderator_role(GUILD, ROLE, actor_id=MOD)
        assert store.first_time_notice(GUILD, USER)

    with GuildConfigStore(bot_db_url) as reopened:
        server_set, _ = reopened.effective_label_set(GUILD, OTHER_CHANNEL)
        assert server_set.texts == ["benign", "malignant"]
        assert server_set.labels[0].templates == (TISSUE,)
        config = reopened.channel_config(GUILD, CHANNEL)
        assert config.label_set == get_preset("wsss4luad")
        assert config.label_source == LabelSource.CHANNEL
        assert config.ingest_enabled and config.bot_enabled and config.sharing
        assert config.moderator_role_id == ROLE
        assert not reopened.bot_enabled(GUILD, OTHER_CHANNEL)
        assert not reopened.first_time_notice(GUILD, USER)
        assert len(reopened.audit(GUILD)) == 6


def test_first_time_notice_once_per_server_and_user(config_store: GuildConfigStore) -> None:
    assert config_store.first_time_notice(GUILD, USER)
    assert not config_store.first_time_notice(GUILD, USER)
    assert config_store.first_time_notice(OTHER_GUILD, USER)  # each server explains itself
    assert config_store.first_time_notice(GUILD, USER + 1)

    assert config_store.forget_user(USER) == 2
    assert config_store.forget_user(USER) == 0
    assert config_store.first_time_notice(GUILD, USER)  # forgotten, so explained again


def test_first_time_notice_is_atomic_across_two_workers(bot_db_url: str) -> None:
    users = [USER + i for i in range(5)]
    with GuildConfigStore(bot_db_url) as first, GuildConfigStore(bot_db_url) as second:
        barrier = threading.Barrier(2)

        def worker(store: GuildConfigStore) -> list[bool]:
            barrier.wait()
            return [store.first_time_notice(GUILD, user) for user in users]

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(worker, [first, second]))
    for index in range(len(users)):
        assert sorted([results[0][index], results[1][index]]) == [False, True]


def test_concurrent_first_edits_of_a_scope_both_land(bot_db_url: str) -> None:
    """Two moderators add labels to a server with no set yet: one insert loses the key and retries."""
    with GuildConfigStore(bot_db_url) as first, GuildConfigStore(bot_db_url) as second:
        barrier = threading.Barrier(2)

        def worker(args: tuple[GuildConfigStore, str]) -> None:
            store, label = args
            barrier.wait()
            store.add_labels(GUILD, [label], actor_id=MOD)

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(worker, [(first, "melanoma"), (second, "sarcoma")]))
        texts = first.effective_label_set(GUILD, CHANNEL)[0].texts
    assert {"melanoma", "sarcoma"} <= set(texts)
    assert len(texts) == len(get_preset(DEFAULT_PRESET).texts) + 2


def test_an_invalid_stored_set_falls_back_instead_of_breaking_the_channel(
    config_store: GuildConfigStore, bot_db_url: str
) -> None:
    config_store.set_labels(GUILD, ["benign", "malignant"], actor_id=MOD)
    config_store.set_labels(GUILD, ["tumor"], channel_id=CHANNEL, actor_id=MOD)
    engine = sa.create_engine(bot_db_url)
    try:
        with engine.begin() as connection:  # as if limits had tightened since it was stored
            connection.execute(
                sa.text("UPDATE bot_label_sets SET label_set = :bad WHERE channel_id = :channel"),
                {"bad": '{"format": 1, "name": "custom", "labels": []}', "channel": CHANNEL},
            )
    finally:
        engine.dispose()
    label_set, source = config_store.effective_label_set(GUILD, CHANNEL)
    assert (label_set.texts, source) == (["benign", "malignant"], LabelSource.SERVER)


def test_ids_must_be_snowflakes(config_store: GuildConfigStore) -> None:
    with pytest.raises(ValueError, match="channel_id"):
        config_store.set_labels(GUILD, ["colon"], channel_id=0, actor_id=MOD)
    with pytest.raises(ValueError, match="guild_id"):
        config_store.bot_enabled(None, CHANNEL)  # type: ignore[arg-type]  # a DM has no guild


def test_database_url_follows_the_ledger_setting(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert bot_database_url(settings) == f"sqlite:///{tmp_path}/bot.sqlite3"
    shared = "postgresql+psycopg://plipbot@db/plipbot"
    assert bot_database_url(load_settings(data_dir=tmp_path, ledger=LedgerSettings(url=shared))) == shared

    with GuildConfigStore.from_settings(settings) as store:
        assert store.first_time_notice(GUILD, USER)
    assert (tmp_path / "bot.sqlite3").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a valid database URL"),
        ("mysql://root@127.0.0.1/plipbot", "SQLite or PostgreSQL"),
        ("postgresql+nosuchdriver://x@127.0.0.1/db", "unusable database driver"),
    ],
)
def test_unusable_urls_are_short_errors(url: str, message: str) -> None:
    with pytest.raises(BotStoreError, match=message) as caught:
        GuildConfigStore(url)
    assert isinstance(caught.value, PlipbotError)


def test_unreachable_database_is_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailableError, match="unreachable"):
        GuildConfigStore("postgresql+psycopg://postgres@127.0.0.1:1/plipbot")
