"""The cache adapter on generated embeddings: it helps where zero-shot is lost, and its guard keeps it
out where zero-shot is already right."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from model.adapter import (
    ALPHAS,
    BETAS,
    CacheAdapter,
    fit_adapter,
    loo_grid,
    loo_queries,
    moved_labels,
    nested_loo_predictions,
    one_hot,
)
from tests.learning.synthetic import already_named, separable_but_misnamed


def weighted_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(f1_score(truth, predicted, average="weighted", zero_division=0))


def adapted_predictions(data, k: int, seed: int) -> tuple[np.ndarray, bool]:  # type: ignore[no-untyped-def]
    keys, labels = data.shots(k, seed)
    fit = fit_adapter(keys, labels, data.zs_logits(keys))
    logits = data.zs_logits(data.test)
    if fit.adapter is not None:
        logits = fit.adapter.logits(data.test, logits)
    return np.argmax(logits, axis=1), fit.used


def test_eight_shots_beat_zero_shot_where_zero_shot_is_near_chance() -> None:
    data = separable_but_misnamed()
    zero_shot = weighted_f1(data.test_labels, np.argmax(data.zs_logits(data.test), axis=1))
    assert zero_shot < 0.45  # near chance (5 classes)
    scores = []
    for seed in range(3):
        predicted, used = adapted_predictions(data, 8, seed)
        assert used
        scores.append(weighted_f1(data.test_labels, predicted))
    assert np.mean(scores) >= zero_shot + 0.2, (zero_shot, scores)


def test_the_guard_keeps_zero_shot_when_it_is_already_right() -> None:
    data = already_named()
    zs_pred = np.argmax(data.zs_logits(data.test), axis=1)
    zero_shot = weighted_f1(data.test_labels, zs_pred)
    assert zero_shot > 0.95
    for seed in range(3):
        predicted, used = adapted_predictions(data, 8, seed)
        assert not used  # leave-one-out cannot beat a perfect zero-shot by the margin
        assert np.array_equal(predicted, zs_pred)


def test_more_shots_do_not_hurt_on_average() -> None:
    data = separable_but_misnamed(seed=3)
    curve = [
        np.mean([weighted_f1(data.test_labels, adapted_predictions(data, k, s)[0]) for s in range(3)])
        for k in (2, 8, 16)
    ]
    assert curve[-1] >= curve[0] - 0.02, curve


def test_cache_logits_follow_the_formula() -> None:
    rng = np.random.default_rng(1)
    keys = rng.standard_normal((6, 8)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    labels = [0, 1, 2, 0, 1, 2]
    adapter = CacheAdapter.build(keys, labels, 3, alpha=2.0, beta=5.5)
    query = keys[:2]
    expected = np.exp(-5.5 * (1 - query @ keys.T)) @ one_hot(labels, 3)
    np.testing.assert_allclose(adapter.cache_logits(query), expected, rtol=1e-5)
    zs = np.zeros((2, 3))
    np.testing.assert_allclose(adapter.logits(query, zs), 2.0 * expected, rtol=1e-5)


def test_leave_one_out_excludes_the_example_itself() -> None:
    # Two far-apart pairs; each example's only neighbour has the other label, so leave-one-out with a
    # sharp cache must get every one wrong (with itself in the cache it would get all right).
    keys = np.array([[1, 0], [0.99, 0.141], [-1, 0], [-0.99, 0.141]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    zs = np.zeros((4, 2))
    correct = loo_grid(keys, labels, zs, alphas=(100.0,), betas=(50.0,))
    assert not correct.any()


def test_fit_needs_two_examples_and_reports_why() -> None:
    keys = np.eye(3, dtype=np.float32)[:1]
    fit = fit_adapter(keys, [0], np.zeros((1, 2)))
    assert not fit.used and "too few" in fit.reason
    empty = fit_adapter(np.zeros((0, 3)), [], np.zeros((0, 2)))
    assert not empty.used and empty.examples == 0


def test_nested_leave_one_out_matches_a_literal_refit() -> None:
    data = separable_but_misnamed(n_classes=3, dim=16, seed=5)
    keys, labels = data.shots(8, 0)
    zs = data.zs_logits(keys)
    fast = nested_loo_predictions(keys, labels, zs)
    slow = []
    for i in range(len(labels)):
        rest = np.arange(len(labels)) != i
        fit = fit_adapter(keys[rest], labels[rest], zs[rest])
        logits = zs[i : i + 1]
        if fit.adapter is not None:
            logits = fit.adapter.logits(keys[i : i + 1], logits)
        slow.append(int(np.argmax(logits)))
    np.testing.assert_array_equal(fast, slow)
    assert accuracy_score(labels, fast) > accuracy_score(labels, np.argmax(zs, axis=1))


@pytest.mark.parametrize(
    ("before", "after", "moved"), [([0.5, 0.5], [0.56, 0.44], [0, 1]), ([0.5, 0.5], [0.52, 0.48], [])]
)
def test_moved_labels(before: list[float], after: list[float], moved: list[int]) -> None:
    assert moved_labels(before, after) == moved


def test_grids_are_sorted_and_positive() -> None:
    assert list(ALPHAS) == sorted(ALPHAS) and min(ALPHAS) > 0
    assert list(BETAS) == sorted(BETAS) and min(BETAS) > 0


def test_sampled_leave_one_out_scores_the_same_examples_the_same_way() -> None:
    data = separable_but_misnamed(seed=4)
    keys, labels = data.train, data.train_labels
    zs = data.zs_logits(keys)
    queries = np.array([0, 5, 17, 42, 101, 159])
    full = loo_grid(keys, labels, zs)
    sampled = loo_grid(keys, labels, zs, queries=queries)
    np.testing.assert_array_equal(sampled, full[:, :, queries])
    assert loo_queries(256) is None and len(loo_queries(1000)) == 256  # type: ignore[arg-type]
