"""Generated embeddings where the right answer is known (no model, no images).

`separable_but_misnamed`: classes form tight clusters in image space, but the label (text) embeddings
point elsewhere, so zero-shot is near chance while a few examples per class pin the clusters down.
`already_named`: the label embeddings are the cluster centres, so zero-shot is already right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOGIT_SCALE = 100.0


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Embedded:
    """Image embeddings with their class indices, and the label set's text embeddings."""

    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray
    label_embeddings: np.ndarray

    def zs_logits(self, images: np.ndarray) -> np.ndarray:
        return LOGIT_SCALE * images @ self.label_embeddings.T

    def shots(self, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """k training examples per class (a seeded draw)."""
        rng = np.random.default_rng(seed)
        chosen = np.concatenate(
            [
                rng.choice(np.flatnonzero(self.train_labels == c), size=k, replace=False)
                for c in range(self.label_embeddings.shape[0])
            ]
        )
        return self.train[chosen], self.train_labels[chosen]


def _clusters(
    n_classes: int, dim: int, per_class: int, spread: float, rng: np.random.Generator, centres: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(n_classes), per_class)
    points = centres[labels] + spread * rng.standard_normal((labels.size, dim)) / np.sqrt(dim)
    return _unit(points), labels


def separable_but_misnamed(
    n_classes: int = 5, dim: int = 64, spread: float = 0.8, seed: int = 0
) -> Embedded:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_classes, dim)))
    train, train_labels = _clusters(n_classes, dim, 32, spread, rng, centres)
    test, test_labels = _clusters(n_classes, dim, 60, spread, rng, centres)
    text = _unit(rng.standard_normal((n_classes, dim)))  # unrelated to the clusters
    return Embedded(train, train_labels, test, test_labels, text)


def already_named(n_classes: int = 5, dim: int = 64, spread: float = 0.8, seed: int = 0) -> Embedded:
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_classes, dim)))
    train, train_labels = _clusters(n_classes, dim, 32, spread, rng, centres)
    test, test_labels = _clusters(n_classes, dim, 60, spread, rng, centres)
    return Embedded(train, train_labels, test, test_labels, centres)
