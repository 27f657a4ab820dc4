"""Zero-shot label suggestions: softmax over logit_scale * cosine(image, label prompt).

A label may carry several prompt templates; their text embeddings are averaged in embedding space
and re-normalised (CLIP's prompt ensembling). Label-set embeddings are cached by (model, revision,
labels, templates), in memory and on disk, so a server's label set is encoded once, not per message.
An answer is flagged "uncertain" when the top two labels are close or the distribution is flat,
so the bot can say it does not know rather than present a coin flip as a suggestion.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from model.identity import ModelIdentity
from plipbot.errors import LabelSetError

MAX_LABELS = 100
MAX_LABEL_CHARS = 100
MAX_TEMPLATES = 10


class TextImageEncoder(Protocol):
    """What the zero-shot engine needs from an encoder (ClipEncoder satisfies it)."""

    identity: ModelIdentity
    default_template: str
    logit_scale: float

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def _check_template(template: str) -> str:
    if template.count("{}") != 1:
        raise LabelSetError(f"Template '{template}' must contain exactly one {{}} where the label goes.")
    return template


@dataclass(frozen=True)
class Label:
    """A label and its prompt templates (empty: the label set's or the model's default template)."""

    text: str
    templates: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    """A named, validated list of labels."""

    name: str
    labels: tuple[Label, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if not self.labels:
            raise LabelSetError("The label set is empty: give at least one label.")
        if len(self.labels) > MAX_LABELS:
            raise LabelSetError(f"Too many labels ({len(self.labels)}); the limit is {MAX_LABELS}.")
        seen: set[str] = set()
        for label in self.labels:
            text = label.text.strip()
            if not text:
                raise LabelSetError("Labels cannot be empty.")
            if len(text) > MAX_LABEL_CHARS:
                raise LabelSetError(f"Label '{text[:30]}...' is longer than {MAX_LABEL_CHARS} characters.")
            if text.casefold() in seen:
                raise LabelSetError(f"Label '{text}' appears twice.")
            seen.add(text.casefold())
            if len(label.templates) > MAX_TEMPLATES:
                raise LabelSetError(f"Label '{text}' has more than {MAX_TEMPLATES} templates.")
            for template in label.templates:
                _check_template(template)

    @classmethod
    def from_texts(
        cls, texts: Sequence[str], templates: Sequence[str] = (), name: str = "custom"
    ) -> LabelSet:
        """Labels given on a command line or in a slash command, all sharing the same templates."""
        cleaned = tuple(t.strip() for t in texts)
        return cls(name=name, labels=tuple(Label(t, tuple(templates)) for t in cleaned))

    def with_templates(self, templates: Sequence[str]) -> LabelSet:
        """The same labels prompted with other templates (e.g. `--template`)."""
        for template in templates:
            _check_template(template)
        return LabelSet(
            self.name, tuple(Label(lb.text, tuple(templates)) for lb in self.labels), self.description
        )

    @property
    def texts(self) -> list[str]:
        """Label names in order."""
        return [label.text for label in self.labels]

    def prompts(self, default_template: str) -> list[list[str]]:
        """For each label, its filled-in prompts."""
        return [
            [t.replace("{}", label.text) for t in (label.templates or (default_template,))]
            for label in self.labels
        ]


@dataclass(frozen=True)
class Suggestion:
    """One label and its probability."""

    label: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """Suggestions for one image, most probable first, and whether the model is unsure."""

    suggestions: tuple[Suggestion, ...]
    uncertain: bool
    margin: float
    entropy: float
    model: ModelIdentity
    all_probabilities: tuple[Suggestion, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, object]:
        """JSON form used by the CLI and task results."""
        return {
            "suggestions": [{"label": s.label, "probability": s.probability} for s in self.suggestions],
            "uncertain": self.uncertain,
            "margin": self.margin,
            "entropy": self.entropy,
            "model": self.model.as_dict(),
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise numerically stable softmax in float64 (probabilities are reported, so be exact)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class ZeroShotClassifier:
    """Suggest labels for images with a CLIP-family encoder."""

    def __init__(
        self,
        encoder: TextImageEncoder,
        *,
        cache_dir: Path | None = None,
        uncertain_margin: float = 0.15,
        uncertain_entropy: float = 0.9,
        memory_entries: int = 256,
    ) -> None:
        self.encoder = encoder
        self.cache_dir = cache_dir
        self.uncertain_margin = uncertain_margin
        self.uncertain_entropy = uncertain_entropy
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_entries = memory_entries

    def cache_key(self, label_set: LabelSet) -> str:
        """Stable key over (model, revision, labels, templates); the set's name does not matter."""
        identity = self.encoder.identity
        payload = json.dumps(
            [identity.name, identity.revision, label_set.prompts(self.encoder.default_template)],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def label_embeddings(self, label_set: LabelSet) -> np.ndarray:
        """(n_labels, d) normalised label embeddings, each the re-normalised mean of its prompts."""
        key = self.cache_key(label_set)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self.cache_dir / "labels" / f"{key}.npy" if self.cache_dir else None
        embeddings: np.ndarray | None = None
        if path is not None and path.exists():
            try:
                embeddings = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                embeddings = None
        if embeddings is None or embeddings.shape[0] != len(label_set.labels):
            embeddings = self._encode_label_set(label_set)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, embeddings, allow_pickle=False)
                tmp.replace(path)
        self._memory[key] = embeddings
        if len(self._memory) > self._memory_entries:
            self._memory.popitem(last=False)
        return embeddings

    def _encode_label_set(self, label_set: LabelSet) -> np.ndarray:
        per_label = label_set.prompts(self.encoder.default_template)
        flat = [p for prompts in per_label for p in prompts]
        encoded = self.encoder.encode_texts(flat)
        rows, start = [], 0
        for prompts in per_label:
            mean = encoded[start : start + len(prompts)].mean(axis=0)
            rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            start += len(prompts)
        return np.stack(rows).astype(np.float32)

    def logits(self, image_embeddings: np.ndarray, label_set: LabelSet) -> np.ndarray:
        """(n_images, n_labels) logit_scale * cosine (what a cache adapter adds to)."""
        return self.encoder.logit_scale * (image_embeddings @ self.label_embeddings(label_set).T)

    def probabilities(self, image_embeddings: np.ndarray, label_set: LabelSet) -> np.ndarray:
        """(n_images, n_labels) softmax(logit_scale * cosine)."""
        return softmax(self.logits(image_embeddings, label_set))

    def predict_embeddings(
        self, image_embeddings: np.ndarray, label_set: LabelSet, top_k: int = 3
    ) -> list[Prediction]:
        """Predictions from precomputed image embeddings (workers embed once, then classify and search)."""
        probs = self.probabilities(image_embeddings, label_set)
        return [self._prediction(row, label_set, top_k) for row in probs]

    def predict(self, images: Sequence[Image.Image], label_set: LabelSet, top_k: int = 3) -> list[Prediction]:
        """Embed images and suggest labels."""
        return self.predict_embeddings(self.encoder.encode_images(images), label_set, top_k)

    def prediction(self, probabilities: np.ndarray, label_set: LabelSet, top_k: int = 3) -> Prediction:
        """Ranked suggestions and the uncertainty flags for one row of probabilities over `label_set`
        (e.g. probabilities a cache adapter changed)."""
        return self._prediction(np.asarray(probabilities, dtype=np.float64), label_set, top_k)

    def _prediction(self, row: np.ndarray, label_set: LabelSet, top_k: int) -> Prediction:
        order = np.argsort(-row, kind="stable")
        ranked = tuple(Suggestion(label_set.labels[i].text, float(row[i])) for i in order)
        n = len(row)
        margin = float(row[order[0]] - row[order[1]]) if n > 1 else 1.0
        entropy = float(-(row * np.log(np.clip(row, 1e-300, None))).sum() / math.log(n)) if n > 1 else 0.0
        uncertain = n > 1 and (margin < self.uncertain_margin or entropy > self.uncertain_entropy)
        return Prediction(
            suggestions=ranked[: max(1, top_k)],
            uncertain=uncertain,
            margin=margin,
            entropy=entropy,
            model=self.encoder.identity,
            all_probabilities=ranked,
        )
