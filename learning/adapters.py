"""Per-server cache adapters, fitted from the examples store and kept warm in the worker's memory.

An answer in a server asks `ServerAdapters.adapter_for(...)`: one primary-key read of the server's
revision and learning switch, then either the adapter fitted earlier (same revision, same label set,
same model) or a refit, which is a few milliseconds of numpy (`model.adapter.fit_adapter`). So a
moderator's confirmation shows in the very next answer, in every worker process, with no retraining
and nothing shipped in task messages.

When is the adapter used?

* `/labels learning off` (channel, else server): never.
* `/labels learning on`: whenever the leave-one-out guard lets it (at least two examples).
* Neither (the default): once every label of the set has `min_examples_per_label` examples, and the
  guard lets it.

The guard: leave-one-out accuracy on the server's examples must beat zero-shot's on them by `margin`.
Examples whose label is not in the label set asking are simply not in its cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from learning.examples import ExampleSet, ExamplesStore
from model.adapter import DEFAULT_MARGIN, MOVED_THRESHOLD, AdapterFit, CacheAdapter, fit_adapter, moved_labels
from model.zeroshot import LabelSet, softmax

DEFAULT_MIN_EXAMPLES_PER_LABEL = 2
DEFAULT_MAX_EXAMPLES = 1000


@dataclass(frozen=True)
class LearningPolicy:
    """The learning settings (`PLIPBOT_LEARNING__*`) the adapters follow."""

    enabled: bool = True
    margin: float = DEFAULT_MARGIN
    min_examples_per_label: int = DEFAULT_MIN_EXAMPLES_PER_LABEL
    max_examples: int = DEFAULT_MAX_EXAMPLES


@dataclass(frozen=True)
class LabelledExamples:
    """A server's examples whose label is in one label set, as class indices of that set."""

    vectors: np.ndarray
    labels: np.ndarray
    counts: tuple[int, ...]
    """Examples per label, in the label set's order."""

    @property
    def size(self) -> int:
        return int(self.labels.size)


def labelled_examples(example_set: ExampleSet, label_set: LabelSet) -> LabelledExamples:
    """Keep the examples whose label (case-insensitively) is one of `label_set`'s."""
    index = {label.text.strip().casefold(): i for i, label in enumerate(label_set.labels)}
    rows = [
        (row, index[example.label.casefold()])
        for row, example in enumerate(example_set.examples)
        if example.label.casefold() in index
    ]
    counts = [0] * len(label_set.labels)
    for _, label in rows:
        counts[label] += 1
    if not rows:
        return LabelledExamples(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), tuple(counts))
    vectors = example_set.vectors[[row for row, _ in rows]]
    return LabelledExamples(vectors, np.array([label for _, label in rows]), tuple(counts))


@dataclass(frozen=True)
class ServerAdapter:
    """What a server's examples do to answers with one label set."""

    fit: AdapterFit
    active: bool
    """Whether answers use the adapter (switch, default rule and guard all agree)."""
    reason: str
    counts: tuple[int, ...]

    @property
    def adapter(self) -> CacheAdapter | None:
        return self.fit.adapter if self.active else None


@dataclass(frozen=True)
class AdaptedAnswer:
    """One image's probabilities before and after the adapter."""

    zero_shot: np.ndarray
    adapted: np.ndarray
    examples: int
    moved: tuple[int, ...]
    """Label indices whose probability changed by at least `MOVED_THRESHOLD`."""

    @property
    def changed(self) -> bool:
        """Whether the adapter changed the answer: another top label, or a label moved visibly."""
        return bool(self.moved) or int(np.argmax(self.zero_shot)) != int(np.argmax(self.adapted))


def adapt_logits(
    query: np.ndarray, zero_shot_logits: np.ndarray, adapter: CacheAdapter, threshold: float = MOVED_THRESHOLD
) -> AdaptedAnswer:
    """Probabilities of one L2-normalised image embedding with and without the adapter."""
    logits = np.asarray(zero_shot_logits, dtype=np.float64).reshape(1, -1)
    before = softmax(logits)[0]
    after = softmax(adapter.logits(np.asarray(query, np.float32).reshape(1, -1), logits))[0]
    return AdaptedAnswer(before, after, adapter.size, tuple(moved_labels(before, after, threshold)))


def decide(
    fit: AdapterFit, counts: tuple[int, ...], switch: bool | None, policy: LearningPolicy
) -> ServerAdapter:
    """Apply the switch and the default rule to a fit (pure: the rules are tested without a database)."""
    if not policy.enabled:
        return ServerAdapter(fit, False, "learning is switched off for this deployment", counts)
    if switch is False:
        return ServerAdapter(fit, False, "learning is off here (/labels learning)", counts)
    if switch is None and min(counts, default=0) < policy.min_examples_per_label:
        short = sum(1 for c in counts if c < policy.min_examples_per_label)
        reason = (
            f"{short} label(s) have fewer than {policy.min_examples_per_label} confirmed examples "
            "(learning starts by itself once every label has them, or use /labels learning on)"
        )
        return ServerAdapter(fit, False, reason, counts)
    return ServerAdapter(fit, fit.used, fit.reason, counts)


class ServerAdapters:
    """Fitted adapters per (server, model, label set), refitted when the server's revision moves.

    Thread-safe; bounded (least recently used servers are dropped first).
    """

    def __init__(
        self, store: ExamplesStore, policy: LearningPolicy | None = None, *, max_entries: int = 512
    ) -> None:
        self.store = store
        self.policy = policy or LearningPolicy()
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str, str], tuple[int, ServerAdapter]] = OrderedDict()

    def adapter_for(
        self,
        *,
        guild_id: int,
        channel_id: int | None,
        model_key: str,
        label_set: LabelSet,
        label_set_cache_key: str,
        label_embeddings: np.ndarray,
        logit_scale: float,
    ) -> ServerAdapter | None:
        """The server's adapter for this label set, or None when it has no usable examples.

        `label_set_cache_key` identifies the prompts (the zero-shot classifier's cache key), because
        the zero-shot logits the guard compares against depend on them.
        """
        if not self.policy.enabled:
            return None
        revision, switch = self.store.state(guild_id, channel_id)
        if revision == 0 or switch is False:
            return None
        key = (guild_id, model_key, label_set_cache_key)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] == revision:
                self._cache.move_to_end(key)
                fit_state = cached[1]
                return decide(fit_state.fit, fit_state.counts, switch, self.policy)
        example_set = self.store.examples(guild_id, model_key, limit=self.policy.max_examples)
        fitted = self.fit(example_set, label_set, label_embeddings, logit_scale)
        with self._lock:
            self._cache[key] = (example_set.revision, fitted)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        if fitted.fit.examples == 0:
            return None
        return decide(fitted.fit, fitted.counts, switch, self.policy)

    def fit(
        self, example_set: ExampleSet, label_set: LabelSet, label_embeddings: np.ndarray, logit_scale: float
    ) -> ServerAdapter:
        """Fit (no switch applied: `active` is the guard's verdict alone)."""
        labelled = labelled_examples(example_set, label_set)
        if labelled.size == 0:
            fit = fit_adapter(np.zeros((0, 1)), np.zeros(0), np.zeros((0, len(label_set.labels))))
        else:
            zs_logits = logit_scale * (labelled.vectors @ np.asarray(label_embeddings, np.float32).T)
            fit = fit_adapter(labelled.vectors, labelled.labels, zs_logits, margin=self.policy.margin)
        return ServerAdapter(fit, fit.used, fit.reason, labelled.counts)

    def invalidate(self, guild_id: int | None = None) -> None:
        """Drop cached adapters (of one server): the next answer refits."""
        with self._lock:
            for key in [k for k in self._cache if guild_id is None or k[0] == guild_id]:
                del self._cache[key]
