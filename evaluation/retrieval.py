"""Cross-modal retrieval as in the paper's Twitter validation: each caption has exactly one image.

Text-to-image asks, for each caption, whether its own image is among the k most similar images;
image-to-text asks the same the other way round. Similarity is the cosine of L2-normalised embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.metrics import RETRIEVAL_KS, recall_at_k


@dataclass(frozen=True)
class RetrievalResult:
    """Recall@k in both directions over n pairs."""

    n: int
    text_to_image: dict[int, float]
    image_to_text: dict[int, float]

    def as_dict(self) -> dict[str, object]:
        """JSON form: {"n", "text_to_image": {"R@1": ...}, "image_to_text": {...}}."""
        return {
            "n": self.n,
            "text_to_image": {f"R@{k}": v for k, v in self.text_to_image.items()},
            "image_to_text": {f"R@{k}": v for k, v in self.image_to_text.items()},
        }


def evaluate_retrieval(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, ks: Sequence[int] = RETRIEVAL_KS
) -> RetrievalResult:
    """Pair i is (image i, text i); both arrays L2-normalised, one row per pair."""
    if image_embeddings.shape != text_embeddings.shape:
        raise ValueError("one image and one text embedding per pair are needed")
    similarity = text_embeddings.astype(np.float64) @ image_embeddings.astype(np.float64).T
    targets = np.arange(len(similarity))
    return RetrievalResult(
        n=len(similarity),
        text_to_image=recall_at_k(similarity, targets, ks),
        image_to_text=recall_at_k(similarity.T, targets, ks),
    )
