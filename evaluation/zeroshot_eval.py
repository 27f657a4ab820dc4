"""Zero-shot evaluation: the paper's protocol on any label set and any folder of labelled images.

Prediction is the argmax of softmax(logit_scale * cosine(image, label prompt)) exactly as the bot answers
(`model.zeroshot.ZeroShotClassifier`); the softmax also gives the confidences that calibration needs.
A prompt ensemble averages each label's template embeddings; the templates report scores each template
alone next to the ensemble, so a moderator sees which prompts help.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.metrics import (
    DEFAULT_CALIBRATION_BINS,
    Calibration,
    ClassificationMetrics,
    calibration,
    classification_metrics,
)
from model.zeroshot import LabelSet, ZeroShotClassifier


@dataclass(frozen=True)
class ZeroShotEvaluation:
    """Predictions and scores of one label set on one set of labelled image embeddings."""

    label_set: LabelSet
    y_true: np.ndarray  # label index per image
    probabilities: np.ndarray  # (n, K) float64
    metrics: ClassificationMetrics
    calibration: Calibration

    @property
    def y_pred(self) -> np.ndarray:
        """Top-1 label index per image."""
        return self.probabilities.argmax(axis=1)


def evaluate_zero_shot(
    classifier: ZeroShotClassifier,
    image_embeddings: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    label_set: LabelSet,
    n_bins: int = DEFAULT_CALIBRATION_BINS,
) -> ZeroShotEvaluation:
    """Score precomputed, L2-normalised image embeddings against a label set."""
    truth = np.asarray(y_true, dtype=np.int64)
    probabilities = classifier.probabilities(image_embeddings, label_set)
    return ZeroShotEvaluation(
        label_set=label_set,
        y_true=truth,
        probabilities=probabilities,
        metrics=classification_metrics(truth, probabilities.argmax(axis=1), label_set.texts),
        calibration=calibration(probabilities, truth, n_bins),
    )


def label_set_templates(label_set: LabelSet, default_template: str) -> list[str]:
    """The distinct templates a label set prompts with, in first-use order."""
    seen: dict[str, None] = {}
    for label in label_set.labels:
        for template in label.templates or (default_template,):
            seen.setdefault(template, None)
    return list(seen)


@dataclass(frozen=True)
class TemplateScore:
    """How one template (or the ensemble of all) does on the data."""

    template: str  # the template, or "ensemble"
    weighted_f1: float
    macro_f1: float
    accuracy: float

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "template": self.template,
            "weighted_f1": self.weighted_f1,
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
        }


def templates_report(
    classifier: ZeroShotClassifier,
    image_embeddings: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    label_set: LabelSet,
) -> list[TemplateScore]:
    """Each template on its own, then the label set as given (the ensemble), on the same images."""
    templates = label_set_templates(label_set, classifier.encoder.default_template)
    rows = []
    for name, variant in [
        *((t, label_set.with_templates([t])) for t in templates),
        ("ensemble", label_set),
    ]:
        scores = evaluate_zero_shot(classifier, image_embeddings, y_true, variant).metrics
        rows.append(TemplateScore(name, scores.weighted_f1, scores.macro_f1, scores.accuracy))
    return rows
