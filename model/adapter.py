"""A training-free cache adapter on top of zero-shot logits (Tip-Adapter, Zhang et al., ECCV 2022).

A server's confirmed examples become a key-value cache: keys are the examples' L2-normalised image
embeddings, values their one-hot labels. For a query image embedding `f`,

    logits = zs_logits + alpha * exp(-beta * (1 - f @ keys.T)) @ onehot

so an image close to confirmed examples of a label gains logit towards that label; an image far from
every example keeps its zero-shot answer. `alpha` (the blend) and `beta` (the sharpness) are chosen on
the server's own examples by leave-one-out (each example classified by the cache of all the others),
and the adapter is used only when that accuracy beats zero-shot's on the same examples by a margin,
so examples that do not help (too few, or zero-shot already right) leave the answers alone.

Fitting is a handful of (n x n) matrix products, milliseconds for hundreds of examples, so a new
confirmation is picked up by refitting, never by training. Pure numpy: no torch, no discord.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

ALPHAS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
"""Blend grid. Zero-shot logits are logit_scale (100 for CLIP) x cosine, so labels differ by a few to tens;
the cache adds up to alpha per close example."""
BETAS: tuple[float, ...] = (1.0, 3.0, 5.5, 10.0, 20.0)
"""Sharpness grid (5.5 is the paper's ImageNet value; larger values only count near-duplicates)."""
DEFAULT_MARGIN = 0.05
"""Leave-one-out accuracy the adapter must gain over zero-shot on the examples before it is used."""
MOVED_THRESHOLD = 0.05
"""A label whose probability changed by at least this much (5 points) 'moved' (the chart marks it)."""


_F = TypeVar("_F", bound=Callable[..., Any])


@functools.cache
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread(function: _F) -> _F:
    """Run `function` with numpy's BLAS on one thread.

    These products are small; OpenBLAS's thread pool costs far more than it saves on a busy CPU
    (measured here: a 1x512 by 512x1000 product took 26 ms with its threads, 0.4 ms without). Only
    numpy's BLAS is limited (torch keeps its own threads), and only while `function` runs.
    """

    @functools.wraps(function)
    def limited(*args: Any, **kwargs: Any) -> Any:
        with _blas_controller().limit(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return limited  # type: ignore[return-value]


def _normalised(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def one_hot(labels: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """(n, n_classes) float32 one-hot rows."""
    index = np.asarray(labels, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= n_classes):
        raise ValueError(f"label indices must lie in [0, {n_classes}), got {index.min()}..{index.max()}")
    out = np.zeros((index.size, n_classes), dtype=np.float32)
    out[np.arange(index.size), index] = 1.0
    return out


@dataclass(frozen=True)
class CacheAdapter:
    """The cache (keys, one-hot values) and the blend/sharpness it applies with."""

    keys: np.ndarray
    """(n, d) L2-normalised float32 image embeddings of the examples."""
    values: np.ndarray
    """(n, n_classes) float32 one-hot labels."""
    alpha: float
    beta: float

    @classmethod
    def build(
        cls, keys: np.ndarray, labels: Sequence[int] | np.ndarray, n_classes: int, alpha: float, beta: float
    ) -> CacheAdapter:
        """An adapter over `keys` labelled by class indices `labels`."""
        keys = _normalised(keys)
        if keys.ndim != 2 or keys.shape[0] != len(labels):
            raise ValueError("keys must be (n, d) with one label per row")
        return cls(keys, one_hot(labels, n_classes), float(alpha), float(beta))

    @property
    def size(self) -> int:
        """Examples in the cache."""
        return int(self.keys.shape[0])

    @one_blas_thread
    def cache_logits(self, queries: np.ndarray) -> np.ndarray:
        """(m, n_classes) exp(-beta (1 - cos)) @ onehot for L2-normalised query embeddings."""
        affinity = np.asarray(queries, dtype=np.float32) @ self.keys.T
        return np.exp(-self.beta * (1.0 - affinity)) @ self.values

    def logits(self, queries: np.ndarray, zero_shot_logits: np.ndarray) -> np.ndarray:
        """The adapted logits: zero-shot plus alpha times the cache's."""
        return np.asarray(zero_shot_logits, dtype=np.float64) + self.alpha * self.cache_logits(queries)


@dataclass(frozen=True)
class AdapterFit:
    """The outcome of fitting on a server's examples: what was chosen, and whether it is used."""

    adapter: CacheAdapter | None
    """None when the leave-one-out guard keeps zero-shot (or there are too few examples)."""
    examples: int
    zero_shot_accuracy: float
    """Zero-shot accuracy on the examples (nan without examples)."""
    loo_accuracy: float
    """Best leave-one-out accuracy of the adapter over the grid (nan with fewer than 2 examples)."""
    alpha: float
    beta: float
    reason: str
    """One line for people: why the adapter is or is not used."""

    @property
    def used(self) -> bool:
        """Whether answers go through the adapter."""
        return self.adapter is not None


def _distances(keys: np.ndarray) -> np.ndarray:
    """1 - cos between examples (float32), computed once for the whole beta grid."""
    return 1.0 - np.clip(keys @ keys.T, -1.0, 1.0)


def _affinities(distances: np.ndarray, beta: float) -> np.ndarray:
    """exp(-beta (1 - cos)) between examples, with each example's affinity to itself removed."""
    affinity = np.exp(np.float32(-beta) * distances)
    np.fill_diagonal(affinity, 0.0)
    return affinity


def _check(keys: np.ndarray, labels: np.ndarray, zs_logits: np.ndarray) -> None:
    if keys.ndim != 2 or zs_logits.ndim != 2 or not (keys.shape[0] == labels.shape[0] == zs_logits.shape[0]):
        raise ValueError("keys, labels and zero-shot logits must describe the same examples")


@one_blas_thread
def loo_grid(
    keys: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    zs_logits: np.ndarray,
    *,
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
    queries: np.ndarray | None = None,
) -> np.ndarray:
    """(len(betas), len(alphas), q) bool: is each example right when left out of the cache?

    `queries` (indices) limits which examples are left out and scored, each against the cache of all
    the others; default: every example.
    """
    keys = _normalised(keys)
    label_index = np.asarray(labels, dtype=np.int64)
    zs = np.asarray(zs_logits, dtype=np.float64)
    _check(keys, label_index, zs)
    chosen = np.arange(keys.shape[0]) if queries is None else np.asarray(queries, dtype=np.int64)
    values = one_hot(label_index, zs.shape[1])
    correct = np.zeros((len(betas), len(alphas), chosen.size), dtype=bool)
    distances = 1.0 - np.clip(keys[chosen] @ keys.T, -1.0, 1.0)  # (q, n)
    rows = np.arange(chosen.size)
    for b, beta in enumerate(betas):
        affinity = np.exp(np.float32(-beta) * distances)
        affinity[rows, chosen] = 0.0  # an example is never its own neighbour
        cache = affinity @ values
        for a, alpha in enumerate(alphas):
            correct[b, a] = np.argmax(zs[chosen] + alpha * cache, axis=1) == label_index[chosen]
    return correct


MAX_LOO_QUERIES = 256
"""Above this many examples, leave-one-out scores a fixed sample of them (each still against all the
others), so a refit stays O(n) in the examples rather than O(n^2)."""


def loo_queries(n: int, limit: int = MAX_LOO_QUERIES) -> np.ndarray | None:
    """A fixed (seeded) sample of example indices to score, or None for all of them."""
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(0).choice(n, size=limit, replace=False))


def _choose(accuracy: np.ndarray, alphas: Sequence[float], betas: Sequence[float]) -> tuple[int, int]:
    """Best (beta, alpha) indices; ties go to the smallest alpha, then the smallest beta (the gentlest)."""
    best = accuracy.max()
    candidates = np.argwhere(np.isclose(accuracy, best))
    b, a = min(candidates, key=lambda ba: (alphas[ba[1]], betas[ba[0]]))
    return int(b), int(a)


@one_blas_thread
def fit_adapter(
    keys: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    zs_logits: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
) -> AdapterFit:
    """Choose alpha and beta by leave-one-out and keep the adapter only if it beats zero-shot by `margin`.

    `zs_logits` are the zero-shot logits of the examples themselves (logit_scale x cosine to each label).
    """
    keys = _normalised(keys)
    label_index = np.asarray(labels, dtype=np.int64)
    zs = np.asarray(zs_logits, dtype=np.float64)
    n = int(label_index.size)
    if n == 0:
        return AdapterFit(None, 0, float("nan"), float("nan"), 0.0, 0.0, "no confirmed examples")
    _check(keys, label_index, zs)
    queries = loo_queries(n)
    scored = slice(None) if queries is None else queries
    zs_accuracy = float(np.mean(np.argmax(zs[scored], axis=1) == label_index[scored]))
    if n < 2:
        return AdapterFit(None, n, zs_accuracy, float("nan"), 0.0, 0.0, "one example is too few")
    accuracy = loo_grid(keys, label_index, zs, alphas=alphas, betas=betas, queries=queries).mean(axis=2)
    b, a = _choose(accuracy, alphas, betas)
    loo = float(accuracy[b, a])
    alpha, beta = float(alphas[a]), float(betas[b])
    if loo < zs_accuracy + margin - 1e-12:
        reason = (
            f"leave-one-out accuracy {loo:.0%} does not beat zero-shot's {zs_accuracy:.0%} "
            f"by {margin:.0%}; answering zero-shot"
        )
        return AdapterFit(None, n, zs_accuracy, loo, alpha, beta, reason)
    adapter = CacheAdapter(keys, one_hot(label_index, zs.shape[1]), alpha, beta)
    reason = (
        f"leave-one-out accuracy {loo:.0%} vs zero-shot {zs_accuracy:.0%} (alpha {alpha:g}, beta {beta:g})"
    )
    return AdapterFit(adapter, n, zs_accuracy, loo, alpha, beta, reason)


@one_blas_thread
def nested_loo_predictions(
    keys: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    zs_logits: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    alphas: Sequence[float] = ALPHAS,
    betas: Sequence[float] = BETAS,
) -> np.ndarray:
    """What the bot would have answered for each example had it not been confirmed (leave-one-out).

    For each example i the whole procedure runs without it: alpha and beta are chosen by leave-one-out
    on the other examples, the margin guard decides adapter or zero-shot, and i is predicted. So the
    reported accuracy is not flattered by choosing alpha and beta on the example being scored.
    Vectorised: the cache of example j without i is its full cache minus i's contribution.
    """
    keys = _normalised(keys)
    label_index = np.asarray(labels, dtype=np.int64)
    zs = np.asarray(zs_logits, dtype=np.float64)
    _check(keys, label_index, zs)
    n, n_classes = zs.shape
    zs_pred = np.argmax(zs, axis=1)
    if n < 3:  # without i, fewer than two examples remain: the bot answers zero-shot
        return zs_pred
    values = one_hot(label_index, n_classes)
    zs_correct = zs_pred == label_index
    # Zero-shot accuracy on the examples other than i.
    zs_rest = (zs_correct.sum() - zs_correct) / (n - 1)
    inner_acc = np.zeros((len(betas), len(alphas), n))
    outer_pred = np.zeros((len(betas), len(alphas), n), dtype=np.int64)
    off_diagonal = ~np.eye(n, dtype=bool)
    distances = _distances(keys)
    for b, beta in enumerate(betas):
        affinity = _affinities(distances, beta)  # (n, n), zero diagonal
        cache = affinity @ values  # (n, C): j's cache over all others
        for a, alpha in enumerate(alphas):
            # scores[i, j] = j's logits with i removed from the cache (j != i)
            scores = zs[None, :, :] + alpha * (
                cache[None, :, :] - affinity.T[:, :, None] * values[:, None, :]
            )
            right = (np.argmax(scores, axis=2) == label_index[None, :]) & off_diagonal
            inner_acc[b, a] = right.sum(axis=1) / (n - 1)
            outer_pred[b, a] = np.argmax(zs + alpha * cache, axis=1)
    predictions = np.empty(n, dtype=np.int64)
    for i in range(n):
        b, a = _choose(inner_acc[:, :, i], alphas, betas)
        use = inner_acc[b, a, i] >= zs_rest[i] + margin - 1e-12
        predictions[i] = outer_pred[b, a, i] if use else zs_pred[i]
    return predictions


def moved_labels(
    before: Sequence[float] | np.ndarray,
    after: Sequence[float] | np.ndarray,
    threshold: float = MOVED_THRESHOLD,
) -> list[int]:
    """Indices of labels whose probability changed by at least `threshold`."""
    delta = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    return [int(i) for i in np.flatnonzero(np.abs(delta) >= threshold - 1e-12)]
