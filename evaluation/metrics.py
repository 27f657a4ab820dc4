"""Classification, calibration and retrieval metrics, written out in numpy from a confusion matrix.

The definitions live here in plain sight rather than behind scikit-learn calls, and the tests hold every
number to scikit-learn's on the same predictions, to 1e-9. Conventions are scikit-learn's with
`zero_division=0`: a class never predicted has precision 0, a class with no examples has recall 0 and
weight 0 in the weighted mean, and macro means run over every label of the label set (a label that no
image carries still counts, as `f1_score(..., labels=range(K), average="macro")` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RETRIEVAL_KS = (1, 10, 50)
DEFAULT_CALIBRATION_BINS = 15  # Guo et al. 2017, "On Calibration of Modern Neural Networks"


def _indices(values: Sequence[int] | np.ndarray, n_classes: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= n_classes):
        raise ValueError(f"{what} holds a class index outside 0..{n_classes - 1}")
    return array


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """(K, K) int64 counts: rows are the true class, columns the predicted one."""
    true = _indices(y_true, n_classes, "y_true")
    pred = _indices(y_pred, n_classes, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} entries but y_pred has {pred.size}")
    counts = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


@dataclass(frozen=True)
class ClassificationMetrics:
    """Everything the paper and the issue report about one set of predictions."""

    labels: tuple[str, ...]
    confusion: np.ndarray  # (K, K) int64, rows true, columns predicted

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.confusion.sum())

    @property
    def support(self) -> np.ndarray:
        """Examples per true class."""
        return self.confusion.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """Per class: correct predictions of it / all predictions of it (0 when never predicted)."""
        tp = np.diag(self.confusion).astype(np.float64)
        return _safe_divide(tp, self.confusion.sum(axis=0).astype(np.float64))

    @property
    def recall(self) -> np.ndarray:
        """Per class: correct predictions of it / its examples (0 when it has none)."""
        tp = np.diag(self.confusion).astype(np.float64)
        return _safe_divide(tp, self.support.astype(np.float64))

    @property
    def f1(self) -> np.ndarray:
        """Per class: 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall."""
        tp = np.diag(self.confusion).astype(np.float64)
        fp = self.confusion.sum(axis=0) - tp
        fn = self.support - tp
        return _safe_divide(2 * tp, 2 * tp + fp + fn)

    @property
    def accuracy(self) -> float:
        """Fraction of examples whose top-1 prediction is right."""
        return float(np.trace(self.confusion) / self.n) if self.n else 0.0

    @property
    def weighted_f1(self) -> float:
        """F1 averaged over classes weighted by support: the paper's headline metric."""
        return float((self.f1 * self.support).sum() / self.n) if self.n else 0.0

    @property
    def macro_f1(self) -> float:
        """F1 averaged over all labels with equal weight (rare classes count as much as common ones)."""
        return float(self.f1.mean())

    def per_class(self) -> list[dict[str, object]]:
        """One row per label, in label order."""
        return [
            {
                "label": label,
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for label, p, r, f, s in zip(
                self.labels, self.precision, self.recall, self.f1, self.support, strict=True
            )
        ]


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> ClassificationMetrics:
    """Metrics of predicted class indices against true ones, over the label set `labels`."""
    if not labels:
        raise ValueError("labels must not be empty")
    return ClassificationMetrics(tuple(labels), confusion_matrix(y_true, y_pred, len(labels)))


@dataclass(frozen=True)
class CalibrationBin:
    """Predictions whose top-1 confidence falls in (lower, upper]."""

    lower: float
    upper: float
    count: int
    accuracy: float  # 0 when empty
    confidence: float  # mean top-1 probability; 0 when empty


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error and the reliability diagram's bins."""

    ece: float
    bins: tuple[CalibrationBin, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "ece": self.ece,
            "bins": [
                {
                    "lower": b.lower,
                    "upper": b.upper,
                    "count": b.count,
                    "accuracy": b.accuracy,
                    "confidence": b.confidence,
                }
                for b in self.bins
            ],
        }


def calibration(
    probabilities: np.ndarray, y_true: Sequence[int] | np.ndarray, n_bins: int = DEFAULT_CALIBRATION_BINS
) -> Calibration:
    """ECE over equal-width confidence bins: sum over bins of |B|/n * |accuracy(B) - confidence(B)|.

    Confidence is the top-1 probability and a prediction is right when its argmax is the true class.
    Bins are right-closed, (k/B, (k+1)/B], the first one also taking 0.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    probs = np.asarray(probabilities, dtype=np.float64)
    true = _indices(y_true, probs.shape[1], "y_true")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    n = len(confidence)
    bins, ece = [], 0.0
    for k in range(n_bins):
        members = which == k
        count = int(members.sum())
        acc = float(correct[members].mean()) if count else 0.0
        conf = float(confidence[members].mean()) if count else 0.0
        if count:
            ece += count / n * abs(acc - conf)
        bins.append(CalibrationBin(float(edges[k]), float(edges[k + 1]), count, acc, conf))
    return Calibration(ece=float(ece), bins=tuple(bins))


def recall_at_k(
    similarity: np.ndarray, targets: Sequence[int] | np.ndarray, ks: Sequence[int] = RETRIEVAL_KS
) -> dict[int, float]:
    """Fraction of queries (rows) whose target column is among the k highest-scoring columns.

    A target's rank is the number of candidates scoring strictly higher, so a tie never pushes the
    right answer down (equal to scikit-learn's `top_k_accuracy_score` whenever scores are distinct).
    With k at or above the number of candidates every query is a hit.
    """
    scores = np.asarray(similarity, dtype=np.float64)
    target = _indices(targets, scores.shape[1], "targets")
    if target.size != scores.shape[0]:
        raise ValueError("one target per query row is needed")
    target_score = scores[np.arange(len(target)), target]
    rank = (scores > target_score[:, None]).sum(axis=1)
    return {int(k): float((rank < k).mean()) if len(rank) else 0.0 for k in ks}
