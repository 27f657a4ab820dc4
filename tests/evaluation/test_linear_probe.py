"""Linear probing: the paper's SGD logistic regression, per seed, with mean and spread."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import f1_score

from evaluation.linear_probe import linear_probe


def _clusters(rng: np.random.Generator, n_per_class: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    centres = np.eye(16)[:3] * 3.0
    x = np.concatenate([c + rng.normal(0, spread, (n_per_class, 16)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat([0, 1, 2], n_per_class)


def test_separable_classes_are_learned_by_every_seed() -> None:
    rng = np.random.default_rng(0)
    train_x, train_y = _clusters(rng, 20, 0.3)
    test_x, test_y = _clusters(rng, 10, 0.3)
    result = linear_probe(train_x, train_y, test_x, test_y, ["a", "b", "c"])
    assert [run.seed for run in result.runs] == [0, 1, 2, 3, 4]
    assert result.summary("weighted_f1") == {"mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0}


def test_each_seed_equals_the_papers_classifier_and_the_summary_is_its_mean_and_sd() -> None:
    rng = np.random.default_rng(1)
    train_x, train_y = _clusters(rng, 15, 2.5)  # overlapping: seeds disagree
    test_x, test_y = _clusters(rng, 15, 2.5)
    result = linear_probe(train_x, train_y, test_x, test_y, ["a", "b", "c"], seeds=range(5))
    expected = []
    for seed in range(5):
        reference = SGDClassifier(
            random_state=seed,
            loss="log_loss",
            alpha=0.01,
            penalty="l2",
            max_iter=10000,
            class_weight="balanced",
        ).fit(train_x, train_y)
        expected.append(f1_score(test_y, reference.predict(test_x), average="weighted"))
    np.testing.assert_allclose(result.values("weighted_f1"), expected, atol=1e-9, rtol=0)
    summary = result.summary("weighted_f1")
    assert summary["mean"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert summary["std"] == pytest.approx(np.std(expected, ddof=1), abs=1e-9)
    assert summary["std"] > 0  # the seeds really differ on this data
    payload = result.as_dict()
    assert payload["n_train"] == 45 and payload["n_test"] == 45
    assert [r["weighted_f1"] for r in payload["runs"]] == pytest.approx(expected, abs=1e-9)


def test_at_least_one_seed() -> None:
    x, y = _clusters(np.random.default_rng(2), 3, 0.1)
    with pytest.raises(ValueError, match="seed"):
        linear_probe(x, y, x, y, ["a", "b", "c"], seeds=[])
