"""The examples store on SQLite and PostgreSQL: keeping, relabelling, reading per model, the switch,
review decisions, and erasure by poster, message and server (the UserDataStore contract)."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from learning.examples import (
    ExampleOrigin,
    ExamplesError,
    ExamplesStore,
    ReviewDecision,
    label_set_key,
    model_key,
)
from model.zeroshot import LabelSet
from plipbot.user_data import UserDataStore

GUILD, OTHER_GUILD, CHANNEL = 1001, 1002, 2001
POSTER, OTHER_POSTER, MOD = 3001, 3002, 4001
PLIP = model_key("plip", "67ade53d")
CLIP = model_key("clip", "3d74acf9")


def vector(seed: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def confirm(
    store: ExamplesStore,
    message_id: int,
    label: str,
    *,
    guild_id: int = GUILD,
    poster_id: int = POSTER,
    model: str = PLIP,
    seed: int | None = None,
) -> object:
    return store.confirm(
        guild_id=guild_id,
        channel_id=CHANNEL,
        label_set_key="k" * 32,
        label=label,
        message_id=message_id,
        attachment_id=message_id + 1,
        poster_id=poster_id,
        confirmer_id=MOD,
        origin=ExampleOrigin.MODERATOR,
        model_key=model,
        vector=vector(seed if seed is not None else message_id),
    )


def test_is_a_user_data_store(examples_store: ExamplesStore) -> None:
    assert isinstance(examples_store, UserDataStore)
    assert examples_store.store_name == "examples"


def test_keeps_examples_per_model_with_normalised_vectors(examples_store: ExamplesStore) -> None:
    assert examples_store.revision(GUILD) == 0
    first = confirm(examples_store, 10, "  tumor ")
    confirm(examples_store, 20, "stroma")
    confirm(examples_store, 30, "tumor", model=CLIP)
    assert first.label == "tumor" and first.poster_id == POSTER and first.confirmer_id == MOD  # type: ignore[attr-defined]
    plip = examples_store.examples(GUILD, PLIP)
    assert [e.message_id for e in plip.examples] == [10, 20]
    assert plip.vectors.shape == (2, 8) and plip.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(plip.vectors, axis=1), 1.0, rtol=1e-6)
    expected = vector(10) / np.linalg.norm(vector(10))
    np.testing.assert_allclose(plip.vectors[0], expected, rtol=1e-6)
    assert plip.label_counts() == {"tumor": 1, "stroma": 1}
    assert [e.message_id for e in examples_store.examples(GUILD, CLIP).examples] == [30]
    assert len(examples_store.examples(OTHER_GUILD, PLIP)) == 0
    assert examples_store.revision(GUILD) == 3


def test_confirming_again_relabels_the_same_image(examples_store: ExamplesStore) -> None:
    confirm(examples_store, 10, "tumor")
    confirm(examples_store, 10, "stroma", seed=99)
    examples = examples_store.examples(GUILD, PLIP)
    assert len(examples) == 1 and examples.examples[0].label == "stroma"
    np.testing.assert_allclose(examples.vectors[0], vector(99) / np.linalg.norm(vector(99)), rtol=1e-6)


def test_limit_keeps_the_newest(examples_store: ExamplesStore) -> None:
    for message in (10, 20, 30):
        confirm(examples_store, message, "tumor")
    assert [e.message_id for e in examples_store.examples(GUILD, PLIP, limit=2).examples] == [20, 30]


@pytest.mark.parametrize(
    ("label", "vec"), [("", vector(1)), ("x" * 101, vector(1)), ("ok", np.zeros(8)), ("ok", [np.nan] * 8)]
)
def test_bad_examples_are_refused(examples_store: ExamplesStore, label: str, vec: object) -> None:
    with pytest.raises(ExamplesError):
        examples_store.confirm(
            guild_id=GUILD,
            channel_id=CHANNEL,
            label_set_key="k",
            label=label,
            message_id=1,
            attachment_id=2,
            poster_id=POSTER,
            confirmer_id=MOD,
            origin="moderator",
            model_key=PLIP,
            vector=vec,  # type: ignore[arg-type]
        )
    assert examples_store.revision(GUILD) == 0


def test_forget_user_deletes_their_posts_and_scrubs_them_as_confirmer(
    examples_store: ExamplesStore, examples_db_url: str
) -> None:
    confirm(examples_store, 10, "tumor")
    confirm(examples_store, 20, "tumor", poster_id=OTHER_POSTER)
    confirm(examples_store, 30, "tumor", guild_id=OTHER_GUILD)
    before = examples_store.revision(GUILD)
    assert examples_store.forget_user(POSTER, GUILD) == 1
    assert [e.message_id for e in examples_store.examples(GUILD, PLIP).examples] == [20]
    assert len(examples_store.examples(OTHER_GUILD, PLIP)) == 1  # only that server
    assert examples_store.revision(GUILD) > before
    assert examples_store.forget_user(POSTER, None) == 1
    assert len(examples_store.examples(OTHER_GUILD, PLIP)) == 0
    assert examples_store.forget_user(POSTER, None) == 0  # idempotent

    examples_store.set_learning(GUILD, True, actor_id=MOD)
    examples_store.record_review(feedback_id=9, guild_id=GUILD, decision="approved", moderator_id=MOD)
    assert examples_store.forget_user(MOD, None) == 1  # the moderator's own id is scrubbed, not the example
    [left] = examples_store.all_examples(GUILD)
    assert left.confirmer_id is None and left.poster_id == OTHER_POSTER
    assert examples_store.learning_switch(GUILD) is True and examples_store.reviewed(GUILD) == {9: "approved"}
    engine = sa.create_engine(examples_db_url)
    try:
        with engine.connect() as connection:
            for table, column in (("learning_switches", "updated_by"), ("learning_reviews", "moderator_id")):
                found = connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {column} = {MOD}"))
                assert found.scalar() == 0
    finally:
        engine.dispose()


def test_forget_messages_and_guild(examples_store: ExamplesStore) -> None:
    confirm(examples_store, 10, "tumor")
    confirm(examples_store, 20, "stroma")
    confirm(examples_store, 30, "tumor", guild_id=OTHER_GUILD)
    assert examples_store.forget_messages(GUILD, [10, 999]) == 1
    assert examples_store.forget_messages(OTHER_GUILD, [20]) == 0  # a message id of another server
    assert [e.message_id for e in examples_store.all_examples(GUILD)] == [20]
    examples_store.set_learning(GUILD, True, actor_id=MOD)
    examples_store.record_review(feedback_id=5, guild_id=GUILD, decision="approved", moderator_id=MOD)
    assert examples_store.forget_guild(GUILD) == 1
    assert examples_store.all_examples(GUILD) == [] and examples_store.learning_switch(GUILD) is None
    assert examples_store.reviewed(GUILD) == {}
    assert len(examples_store.all_examples(OTHER_GUILD)) == 1


def test_no_orphan_embeddings_after_erasure(examples_store: ExamplesStore, examples_db_url: str) -> None:
    confirm(examples_store, 10, "tumor")
    confirm(examples_store, 10, "tumor", model=CLIP)
    examples_store.forget_user(POSTER, None)
    engine = sa.create_engine(examples_db_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM learning_embeddings")).scalar() == 0
            assert connection.execute(sa.text("SELECT count(*) FROM learning_examples")).scalar() == 0
    finally:
        engine.dispose()


def test_learning_switch_channel_overrides_server(examples_store: ExamplesStore) -> None:
    assert examples_store.state(GUILD, CHANNEL) == (0, None)
    examples_store.set_learning(GUILD, False, actor_id=MOD)
    assert examples_store.learning_switch(GUILD, CHANNEL) is False
    examples_store.set_learning(GUILD, True, channel_id=CHANNEL, actor_id=MOD)
    assert examples_store.learning_switch(GUILD, CHANNEL) is True
    assert examples_store.learning_switch(GUILD, CHANNEL + 1) is False
    assert examples_store.learning_switch(GUILD) is False
    examples_store.set_learning(GUILD, None, channel_id=CHANNEL, actor_id=MOD)
    assert examples_store.learning_switch(GUILD, CHANNEL) is False


def test_review_decisions(examples_store: ExamplesStore) -> None:
    examples_store.record_review(feedback_id=7, guild_id=GUILD, decision="rejected", moderator_id=MOD)
    examples_store.record_review(feedback_id=7, guild_id=GUILD, decision="approved", moderator_id=MOD)
    examples_store.record_review(feedback_id=8, guild_id=OTHER_GUILD, decision="approved", moderator_id=MOD)
    assert examples_store.reviewed(GUILD) == {7: ReviewDecision.APPROVED}


def test_label_set_key_is_stable_and_ignores_name_and_case() -> None:
    a = LabelSet.from_texts(["Tumor", "stroma"], name="a")
    b = LabelSet.from_texts(["tumor", "Stroma"], name="b")
    c = LabelSet.from_texts(["stroma", "tumor"])
    d = LabelSet.from_texts(["tumor", "stroma"], templates=["An H&E image of {}."])
    assert label_set_key(a) == label_set_key(b)
    assert len({label_set_key(a), label_set_key(c), label_set_key(d)}) == 3
    assert len(label_set_key(a)) == 32
