"""The pathology gate: a zero-shot check that an image is a pathology image before it joins the corpus.

People post all sorts of things in medical channels (selfies, screenshots of papers, radiographs,
memes). The corpus is for pathology only, and a photo of a person is also a privacy risk, so ingest
asks PLIP itself: the probability mass on pathology prompts must reach a threshold. Trusted imports
may skip it (`--skip-gate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.zeroshot import Label, LabelSet, ZeroShotClassifier

PATHOLOGY_PROMPTS: tuple[str, ...] = (
    "an H&E stained histopathology image",
    "an immunohistochemistry stained tissue section under a microscope",
    "a cytology smear under a microscope",
    "a special stain histology image",
    "a gross pathology specimen photograph",
)
OTHER_PROMPTS: tuple[str, ...] = (
    "a photo of a person",
    "a photo of a face",
    "a screenshot of a document with text",
    "a screenshot of a computer screen",
    "a chest radiograph",
    "a CT or MRI scan",
    "a chart or a diagram",
    "a photo of an animal or a landscape",
)


def gate_label_set() -> LabelSet:
    """Pathology prompts first, then everything else; each prompt is its own label (template '{}')."""
    return LabelSet(
        name="ingest-gate",
        labels=tuple(Label(text, ("{}",)) for text in (*PATHOLOGY_PROMPTS, *OTHER_PROMPTS)),
    )


@dataclass(frozen=True)
class GateVerdict:
    """Whether an image passes, with the evidence to show in an ingest summary."""

    passed: bool
    pathology_probability: float
    best_other: str

    @property
    def reason(self) -> str:
        """One line for the summary."""
        return (
            f"not a pathology image (pathology probability {self.pathology_probability:.2f}; "
            f"looks most like {self.best_other})"
        )


class PathologyGate:
    """Zero-shot gate over the ingest encoder; threshold from `PLIPBOT_INGEST__GATE_THRESHOLD`."""

    def __init__(self, zero_shot: ZeroShotClassifier, threshold: float) -> None:
        self.zero_shot = zero_shot
        self.threshold = threshold
        self.label_set = gate_label_set()

    def check(self, image_embeddings: np.ndarray) -> list[GateVerdict]:
        """One verdict per image embedding row."""
        probs = self.zero_shot.probabilities(image_embeddings, self.label_set)
        n_path = len(PATHOLOGY_PROMPTS)
        verdicts = []
        for row in probs:
            p_path = float(row[:n_path].sum())
            other = OTHER_PROMPTS[int(np.argmax(row[n_path:]))]
            verdicts.append(GateVerdict(p_path >= self.threshold, p_path, other))
        return verdicts
