"""Linear probing as in the paper: logistic regression on frozen image embeddings, over several seeds.

The classifier is the one PLIP's `reproducibility/` code trains: scikit-learn's SGDClassifier with log
loss, an L2 penalty of alpha 0.01, balanced class weights and up to 10,000 epochs. SGD shuffles, so the
result depends on the seed; the paper's protocol reports the mean over 5 seeds, and we add the spread.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.metrics import ClassificationMetrics, classification_metrics

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
ALPHA = 0.01
MAX_ITER = 10_000
SUMMARY_METRICS = ("weighted_f1", "macro_f1", "accuracy")


def train_probe(train_x: np.ndarray, train_y: np.ndarray, seed: int, alpha: float = ALPHA) -> object:
    """A fitted SGD logistic regression (convergence warnings are expected on tiny sets and silenced)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    classifier = SGDClassifier(
        loss="log_loss",
        penalty="l2",
        alpha=alpha,
        max_iter=MAX_ITER,
        class_weight="balanced",
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(train_x, train_y)
    return classifier


@dataclass(frozen=True)
class ProbeRun:
    """One seed's test-set scores."""

    seed: int
    metrics: ClassificationMetrics


@dataclass(frozen=True)
class LinearProbeResult:
    """All seeds' runs, with mean and spread per headline metric."""

    labels: tuple[str, ...]
    n_train: int
    n_test: int
    runs: tuple[ProbeRun, ...]

    def values(self, metric: str) -> np.ndarray:
        """One value of `metric` (an attribute of ClassificationMetrics) per seed."""
        return np.asarray([getattr(run.metrics, metric) for run in self.runs], dtype=np.float64)

    def summary(self, metric: str) -> dict[str, float]:
        """Mean, sample standard deviation (0 for one seed), min and max over seeds."""
        values = self.values(metric)
        return {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
        }

    def as_dict(self) -> dict[str, object]:
        """JSON form: summaries per metric, then every seed's numbers."""
        return {
            "labels": list(self.labels),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "seeds": [run.seed for run in self.runs],
            **{metric: self.summary(metric) for metric in SUMMARY_METRICS},
            "runs": [
                {"seed": run.seed, **{m: float(getattr(run.metrics, m)) for m in SUMMARY_METRICS}}
                for run in self.runs
            ],
        }


def linear_probe(
    train_x: np.ndarray,
    train_y: Sequence[int] | np.ndarray,
    test_x: np.ndarray,
    test_y: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    seeds: Sequence[int] = DEFAULT_SEEDS,
    alpha: float = ALPHA,
) -> LinearProbeResult:
    """Train one probe per seed on (train_x, train_y) and score each on the test set."""
    if not seeds:
        raise ValueError("at least one seed is needed")
    train_labels = np.asarray(train_y, dtype=np.int64)
    test_labels = np.asarray(test_y, dtype=np.int64)
    runs = []
    for seed in seeds:
        classifier = train_probe(train_x, train_labels, seed, alpha)
        predicted = classifier.predict(test_x)  # type: ignore[attr-defined]
        runs.append(ProbeRun(int(seed), classification_metrics(test_labels, predicted, labels)))
    return LinearProbeResult(tuple(labels), len(train_labels), len(test_labels), tuple(runs))
