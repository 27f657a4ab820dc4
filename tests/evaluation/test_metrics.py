"""The harness's metrics equal scikit-learn's on the same predictions, to 1e-9, and ECE is as defined."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from evaluation.metrics import calibration, classification_metrics, confusion_matrix, recall_at_k

TOL = 1e-9


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    k = int(rng.integers(2, 10))
    n = int(rng.integers(1, 200))
    y_true = rng.integers(0, k, n)
    # Mostly right with some confusion, and now and then a class that is never predicted or never true.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    if rng.random() < 0.3:
        y_pred[y_pred == k - 1] = 0
    if rng.random() < 0.3:
        y_true[y_true == 1] = 0
    return y_true, y_pred, k


@pytest.mark.parametrize("seed", range(20))
def test_classification_metrics_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true, y_pred, k = _random_case(rng)
    labels = list(range(k))
    ours = classification_metrics(y_true, y_pred, [f"class {i}" for i in labels])
    sk = dict(labels=labels, zero_division=0)
    assert ours.weighted_f1 == pytest.approx(f1_score(y_true, y_pred, average="weighted", **sk), abs=TOL)
    assert ours.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro", **sk), abs=TOL)
    assert ours.accuracy == pytest.approx(accuracy_score(y_true, y_pred), abs=TOL)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, **sk)
    np.testing.assert_allclose(ours.precision, precision, atol=TOL, rtol=0)
    np.testing.assert_allclose(ours.recall, recall, atol=TOL, rtol=0)
    np.testing.assert_allclose(ours.f1, f1, atol=TOL, rtol=0)
    np.testing.assert_array_equal(ours.support, support)
    np.testing.assert_array_equal(ours.confusion, sk_confusion_matrix(y_true, y_pred, labels=labels))
    assert ours.n == len(y_true)
    rows = ours.per_class()
    assert [r["label"] for r in rows] == [f"class {i}" for i in labels]
    assert [r["f1"] for r in rows] == pytest.approx(list(f1), abs=TOL)


def test_hand_computed_example() -> None:
    """A case small enough to check by hand: 2 of 3 class-0 right, the class-1 example called 0."""
    metrics = classification_metrics([0, 0, 0, 1], [0, 0, 1, 0], ["a", "b"])
    assert metrics.confusion.tolist() == [[2, 1], [1, 0]]
    assert metrics.precision.tolist() == [2 / 3, 0.0]
    assert metrics.recall.tolist() == [2 / 3, 0.0]
    assert metrics.accuracy == 0.5
    assert metrics.weighted_f1 == pytest.approx(3 / 4 * 2 / 3)
    assert metrics.macro_f1 == pytest.approx(1 / 3)


def test_out_of_range_indices_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="entries"):
        confusion_matrix([0, 1], [0], 2)


def test_ece_of_constructed_probabilities() -> None:
    """Bin (0.6, 0.8] holds 4 predictions at 0.7 confidence, 2 right: gap 0.2, weight 4/5.
    Bin (0.8, 1.0] holds one right prediction at 0.9: gap 0.1, weight 1/5. ECE = 0.16 + 0.02."""
    probs = np.array([[0.7, 0.3]] * 4 + [[0.1, 0.9]])
    y_true = np.array([0, 0, 1, 1, 1])
    result = calibration(probs, y_true, n_bins=5)
    assert result.ece == pytest.approx(0.8 * 0.2 + 0.2 * 0.1, abs=TOL)
    counts = [b.count for b in result.bins]
    assert counts == [0, 0, 0, 4, 1]
    assert result.bins[3].accuracy == 0.5 and result.bins[3].confidence == pytest.approx(0.7)
    assert result.bins[0].lower == 0.0 and result.bins[-1].upper == 1.0


def test_ece_bins_are_right_closed_and_perfect_calibration_scores_zero() -> None:
    # Confidence exactly 0.5 belongs to the bin (0.4, 0.5], not (0.5, 0.6].
    probs = np.array([[0.5, 0.5], [0.5, 0.5]])
    result = calibration(probs, np.array([0, 1]), n_bins=10)
    assert result.bins[4].count == 2 and result.bins[5].count == 0
    assert result.ece == pytest.approx(0.0, abs=TOL)  # confidence 0.5, half right


def test_ece_matches_a_direct_loop() -> None:
    """Against the textbook definition written as a loop over samples."""
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=500)
    y_true = rng.integers(0, 4, 500)
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    expected = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        members = [(c > lo or b == 0) and c <= hi for c in conf]
        idx = np.flatnonzero(members)
        if len(idx):
            expected += len(idx) / 500 * abs((pred[idx] == y_true[idx]).mean() - conf[idx].mean())
    assert calibration(probs, y_true).ece == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("seed", range(5))
def test_recall_at_k_equals_sklearn_top_k_accuracy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 80
    scores = rng.normal(size=(n, n)) + 2.0 * np.eye(n) * rng.random(n)[:, None]
    targets = np.arange(n)
    ours = recall_at_k(scores, targets, (1, 10, 50))
    for k in (1, 10, 50):
        assert ours[k] == pytest.approx(top_k_accuracy_score(targets, scores, k=k, labels=targets), abs=TOL)


def test_recall_at_k_ties_and_large_k() -> None:
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 0.5, 0.9], [0.2, 0.1, 0.3]])
    result = recall_at_k(scores, [0, 1, 2], (1, 2, 3, 10))
    # Row 0 ties its target (rank 0), row 1's target is second, row 2's first.
    assert result == {1: pytest.approx(2 / 3), 2: 1.0, 3: 1.0, 10: 1.0}
