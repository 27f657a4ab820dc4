"""Zero-shot evaluation on constructed embeddings whose answers are known in advance.

The text side is a stand-in encoder that maps each prompt to a fixed unit vector: with image embeddings
built next to those vectors, every prediction is known before the harness runs. (Whether real
predictions equal the reference model's is tested end to end in test_cli_eval.py.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from evaluation.zeroshot_eval import evaluate_zero_shot, label_set_templates, templates_report
from model.identity import ModelIdentity
from model.zeroshot import Label, LabelSet, ZeroShotClassifier

LABELS = ["adipose tissue", "debris", "mucus"]


class PromptTable:
    """A text encoder with a fixed answer per prompt (a table, not a model)."""

    identity = ModelIdentity("known", "known prompt table", "tests", "r1")
    default_template = "{}"
    logit_scale = 100.0

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.stack([self.vectors[t] for t in texts]).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise AssertionError("the harness must work from image embeddings here")


def _basis(k: int, dim: int = 8) -> np.ndarray:
    return np.eye(dim)[k]


def _images_near(directions: list[int], rng: np.random.Generator, dim: int = 8) -> np.ndarray:
    rows = np.stack([_basis(d, dim) + rng.normal(0, 0.05, dim) for d in directions])
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _classifier(template_to_offset: dict[str, int]) -> ZeroShotClassifier:
    """Prompt `template` filled with label i means direction (i + offset) mod 3."""
    vectors = {
        template.replace("{}", label): _basis((i + offset) % len(LABELS))
        for template, offset in template_to_offset.items()
        for i, label in enumerate(LABELS)
    }
    return ZeroShotClassifier(PromptTable(vectors))


def test_perfectly_separated_classes_score_one() -> None:
    rng = np.random.default_rng(0)
    y_true = np.repeat([0, 1, 2], [5, 3, 4])
    classifier = _classifier({"{}": 0})
    result = evaluate_zero_shot(
        classifier, _images_near(list(y_true), rng), y_true, LabelSet.from_texts(LABELS)
    )
    assert result.y_pred.tolist() == y_true.tolist()
    assert (
        result.metrics.weighted_f1 == 1.0
        and result.metrics.macro_f1 == 1.0
        and result.metrics.accuracy == 1.0
    )
    assert result.metrics.confusion.tolist() == [[5, 0, 0], [0, 3, 0], [0, 0, 4]]
    assert result.calibration.ece < 0.01  # confident and right
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0)


def test_known_confusion_and_its_scores() -> None:
    """Mucus images are built next to 'debris': every one of them must be called debris."""
    rng = np.random.default_rng(1)
    y_true = np.repeat([0, 1, 2], 4)
    directions = [0] * 4 + [1] * 4 + [1] * 4
    classifier = _classifier({"{}": 0})
    result = evaluate_zero_shot(
        classifier, _images_near(directions, rng), y_true, LabelSet.from_texts(LABELS)
    )
    assert result.y_pred.tolist() == directions
    assert result.metrics.confusion.tolist() == [[4, 0, 0], [0, 4, 0], [0, 4, 0]]
    expected = f1_score(y_true, directions, labels=[0, 1, 2], average="weighted", zero_division=0)
    assert result.metrics.weighted_f1 == pytest.approx(expected, abs=1e-9)
    assert result.metrics.accuracy == pytest.approx(8 / 12)
    # confident on all 12, right on 8: ECE is about 1/3
    assert result.calibration.ece == pytest.approx(1 / 3, abs=0.01)


def test_templates_report_scores_each_template_and_the_ensemble() -> None:
    rng = np.random.default_rng(2)
    y_true = np.repeat([0, 1, 2], 3)
    classifier = _classifier({"good {}": 0, "shifted {}": 1})
    label_set = LabelSet.from_texts(LABELS, ["good {}", "shifted {}"])
    rows = templates_report(classifier, _images_near(list(y_true), rng), y_true, label_set)
    assert [r.template for r in rows] == ["good {}", "shifted {}", "ensemble"]
    assert rows[0].weighted_f1 == 1.0 and rows[0].accuracy == 1.0
    assert rows[1].weighted_f1 == 0.0 and rows[1].accuracy == 0.0
    ensemble = evaluate_zero_shot(classifier, _images_near(list(y_true), rng), y_true, label_set)
    assert rows[2].accuracy == pytest.approx(ensemble.metrics.accuracy)


def test_label_set_templates_include_the_model_default_for_bare_labels() -> None:
    label_set = LabelSet("mixed", (Label("a", ("t1 {}", "t2 {}")), Label("b", ("t2 {}",)), Label("c")))
    assert label_set_templates(label_set, "default {}") == ["t1 {}", "t2 {}", "default {}"]
