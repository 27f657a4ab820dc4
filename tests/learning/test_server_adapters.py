"""Per-server adapters over the real examples store: the default rule, the switch, the guard, the cache
and its invalidation by the server's revision, and the moved labels an answer reports."""

from __future__ import annotations

import numpy as np

from learning.adapters import (
    LearningPolicy,
    ServerAdapter,
    ServerAdapters,
    adapt_logits,
    labelled_examples,
)
from learning.examples import ExampleOrigin, ExamplesStore, model_key
from model.adapter import fit_adapter
from model.zeroshot import LabelSet
from tests.learning.synthetic import LOGIT_SCALE, already_named, separable_but_misnamed

GUILD, OTHER_GUILD, CHANNEL, OTHER_CHANNEL, MOD = 11, 12, 21, 22, 31
MODEL = model_key("local", "sha256:abc")
LABEL_SET = LabelSet.from_texts(["a", "b", "c", "d", "e"])
DATA = separable_but_misnamed()


def add(store: ExamplesStore, guild: int, per_class: int, classes: range = range(5), seed: int = 0) -> None:
    keys, labels = DATA.shots(per_class, seed)
    for n, (vector, label) in enumerate(zip(keys, labels, strict=True)):
        if label not in classes:
            continue
        store.confirm(
            guild_id=guild,
            channel_id=CHANNEL,
            label_set_key="k",
            label=LABEL_SET.texts[label].upper(),  # matched case-insensitively
            message_id=100_000 * (seed + 1) + n,
            attachment_id=1,
            poster_id=41,
            confirmer_id=MOD,
            origin=ExampleOrigin.MODERATOR,
            model_key=MODEL,
            vector=vector,
        )


def adapter_for(adapters: ServerAdapters, guild: int = GUILD, channel: int = CHANNEL) -> ServerAdapter | None:
    return adapters.adapter_for(
        guild_id=guild,
        channel_id=channel,
        model_key=MODEL,
        label_set=LABEL_SET,
        label_set_cache_key="prompts",
        label_embeddings=DATA.label_embeddings,
        logit_scale=LOGIT_SCALE,
    )


def test_default_rule_needs_two_examples_of_every_label(examples_store: ExamplesStore) -> None:
    adapters = ServerAdapters(examples_store)
    assert adapter_for(adapters) is None  # no examples at all
    add(examples_store, GUILD, 2, classes=range(4))  # label "e" has none
    waiting = adapter_for(adapters)
    assert waiting is not None and not waiting.active and "fewer than 2" in waiting.reason
    assert waiting.counts == (2, 2, 2, 2, 0)
    add(examples_store, GUILD, 2, classes=range(4, 5))
    ready = adapter_for(adapters)
    assert ready is not None and ready.active and ready.adapter is not None and ready.adapter.size == 10
    assert adapter_for(adapters, guild=OTHER_GUILD) is None  # another server has nothing


def test_switch_per_channel_and_server(examples_store: ExamplesStore) -> None:
    adapters = ServerAdapters(examples_store)
    add(examples_store, GUILD, 1, classes=range(5))
    add(examples_store, GUILD, 2, classes=range(2), seed=7)
    assert not adapter_for(adapters).active  # type: ignore[union-attr]
    examples_store.set_learning(GUILD, True, actor_id=MOD)  # on: the guard alone decides
    assert adapter_for(adapters).active  # type: ignore[union-attr]
    examples_store.set_learning(GUILD, False, channel_id=CHANNEL, actor_id=MOD)
    assert adapter_for(adapters) is None
    assert adapter_for(adapters, channel=OTHER_CHANNEL).active  # type: ignore[union-attr]
    off = ServerAdapters(examples_store, LearningPolicy(enabled=False))
    assert adapter_for(off, channel=OTHER_CHANNEL) is None


def test_refits_only_when_the_revision_moves(examples_store: ExamplesStore) -> None:
    adapters = ServerAdapters(examples_store)
    add(examples_store, GUILD, 2)
    first = adapter_for(adapters)
    again = adapter_for(adapters)
    assert first is not None and again is not None and again.fit is first.fit  # cached
    examples_store.forget_messages(GUILD, [100_000])
    refit = adapter_for(adapters)
    assert refit is not None and refit.fit is not first.fit and refit.fit.examples == 9


def test_guard_keeps_zero_shot_when_it_is_right(examples_store: ExamplesStore) -> None:
    adapters = ServerAdapters(examples_store)
    add(examples_store, GUILD, 3)
    # The label embeddings are the cluster centres: zero-shot is already right on every example.
    centres = already_named().label_embeddings
    server = adapters.fit(examples_store.examples(GUILD, MODEL), LABEL_SET, centres, LOGIT_SCALE)
    assert not server.active and "does not beat" in server.reason


def test_adapted_answer_moves_towards_the_examples() -> None:
    keys, labels = DATA.shots(8, 0)
    fit = fit_adapter(keys, labels, DATA.zs_logits(keys))
    assert fit.adapter is not None
    query = DATA.test[0]
    answer = adapt_logits(query, DATA.zs_logits(query[None])[0], fit.adapter)
    truth = int(DATA.test_labels[0])
    assert answer.adapted[truth] > answer.zero_shot[truth]
    assert truth in answer.moved and answer.changed
    np.testing.assert_allclose(answer.adapted.sum(), 1.0)


def test_labels_outside_the_set_are_left_out(examples_store: ExamplesStore) -> None:
    add(examples_store, GUILD, 2)
    subset = LabelSet.from_texts(["b", "zzz"])
    labelled = labelled_examples(examples_store.examples(GUILD, MODEL), subset)
    assert labelled.counts == (2, 0) and labelled.size == 2 and set(labelled.labels.tolist()) == {0}
