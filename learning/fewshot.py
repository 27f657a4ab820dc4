"""The few-shot curve: how much k confirmed examples per label help, against zero-shot and a linear probe.

For each k and seed, k training images per class are drawn; the cache adapter is fitted on them exactly
as the bot fits a server's examples (alpha and beta by leave-one-out, the margin guard deciding adapter
or zero-shot), and scored on the whole test set. A linear probe (the paper's SGD logistic regression)
is trained on the same k-shot draw for reference. Every few-shot number is the mean over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.metrics import ClassificationMetrics, classification_metrics
from model.adapter import DEFAULT_MARGIN, fit_adapter
from plipbot.errors import InputFileError


@dataclass(frozen=True)
class FewShotPoint:
    """Means over seeds at one k."""

    shots: int
    weighted_f1: float
    accuracy: float
    weighted_f1_std: float
    adapter_used: float
    """Fraction of seeds where the leave-one-out guard let the adapter answer."""
    linear_probe_weighted_f1: float
    linear_probe_accuracy: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "shots": self.shots,
            "weighted_f1": self.weighted_f1,
            "accuracy": self.accuracy,
            "linear_probe_weighted_f1": self.linear_probe_weighted_f1,
            "linear_probe_accuracy": self.linear_probe_accuracy,
            "weighted_f1_std": self.weighted_f1_std,
            "adapter_used": self.adapter_used,
        }


@dataclass(frozen=True)
class FewShotCurve:
    """Zero-shot on the test set, then one point per k."""

    labels: tuple[str, ...]
    zero_shot: ClassificationMetrics
    points: tuple[FewShotPoint, ...]
    seeds: int

    def as_dict(self) -> dict[str, object]:
        """The `plipbot eval fewshot --json` object (a contract: extend, never rename)."""
        return {
            "labels": list(self.labels),
            "seeds": self.seeds,
            "zeroshot": {
                "weighted_f1": self.zero_shot.weighted_f1,
                "accuracy": self.zero_shot.accuracy,
                "macro_f1": self.zero_shot.macro_f1,
                "n": self.zero_shot.n,
            },
            "fewshot": [point.as_dict() for point in self.points],
        }


def sample_shots(targets: np.ndarray, k: int, n_classes: int, seed: int) -> np.ndarray:
    """Indices of k examples of every class, drawn without replacement (a seeded draw)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(n_classes):
        pool = np.flatnonzero(targets == label)
        if pool.size < k:
            raise InputFileError(
                f"{k} shots need {k} training images of every class; class {label} has {pool.size}."
            )
        chosen.append(rng.choice(pool, size=k, replace=False))
    return np.concatenate(chosen)


def few_shot_curve(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    label_embeddings: np.ndarray,
    logit_scale: float,
    labels: Sequence[str],
    shots: Sequence[int],
    seeds: int,
    *,
    margin: float = DEFAULT_MARGIN,
) -> FewShotCurve:
    """Zero-shot and, for each k in `shots`, the adapter and a linear probe on k examples per class."""
    from evaluation.linear_probe import train_probe

    if seeds < 1:
        raise InputFileError("--seeds must be at least 1.")
    if any(k < 1 for k in shots):
        raise InputFileError("--shots must be positive numbers of examples per class.")
    n_classes = len(labels)
    text = np.asarray(label_embeddings, dtype=np.float32)
    test_logits = logit_scale * (test_x @ text.T)
    zero_shot = classification_metrics(test_y, np.argmax(test_logits, axis=1), labels)
    points = []
    for k in shots:
        f1s, accs, used, probe_f1s, probe_accs = [], [], [], [], []
        for seed in range(seeds):
            index = sample_shots(train_y, k, n_classes, seed)
            keys, key_labels = train_x[index], train_y[index]
            fit = fit_adapter(keys, key_labels, logit_scale * (keys @ text.T), margin=margin)
            logits = test_logits if fit.adapter is None else fit.adapter.logits(test_x, test_logits)
            metrics = classification_metrics(test_y, np.argmax(logits, axis=1), labels)
            f1s.append(metrics.weighted_f1)
            accs.append(metrics.accuracy)
            used.append(fit.used)
            probe = train_probe(keys, key_labels, seed)
            probe_metrics = classification_metrics(test_y, probe.predict(test_x), labels)  # type: ignore[attr-defined]
            probe_f1s.append(probe_metrics.weighted_f1)
            probe_accs.append(probe_metrics.accuracy)
        points.append(
            FewShotPoint(
                shots=int(k),
                weighted_f1=float(np.mean(f1s)),
                accuracy=float(np.mean(accs)),
                weighted_f1_std=float(np.std(f1s, ddof=1)) if seeds > 1 else 0.0,
                adapter_used=float(np.mean(used)),
                linear_probe_weighted_f1=float(np.mean(probe_f1s)),
                linear_probe_accuracy=float(np.mean(probe_accs)),
            )
        )
    return FewShotCurve(tuple(labels), zero_shot, tuple(points), seeds)


def curve_table(curve: FewShotCurve) -> str:
    """The curve as a text table (one row per k, zero-shot first)."""
    lines = [
        f"{'shots':>5}  {'weighted F1':>11}  {'accuracy':>8}  {'sd F1':>6}  {'adapter used':>12}  "
        f"{'probe F1':>8}",
        f"{'0':>5}  {curve.zero_shot.weighted_f1:11.3f}  {curve.zero_shot.accuracy:8.3f}  {'':>6}  "
        f"{'zero-shot':>12}  {'':>8}",
    ]
    for p in curve.points:
        lines.append(
            f"{p.shots:>5}  {p.weighted_f1:11.3f}  {p.accuracy:8.3f}  {p.weighted_f1_std:6.3f}  "
            f"{p.adapter_used:12.0%}  {p.linear_probe_weighted_f1:8.3f}"
        )
    return "\n".join(lines)


def write_curve_png(curve: FewShotCurve, path: Path, title: str = "") -> Path:
    """Weighted F1 against shots per class: the adapter, the linear probe, and zero-shot as a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from evaluation.plots import LITERAL, save_png

    fig = Figure(figsize=(6.4, 4.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shots = [p.shots for p in curve.points]
    ax.plot(shots, [p.weighted_f1 for p in curve.points], marker="o", label="cache adapter (Tip-Adapter)")
    ax.plot(
        shots,
        [p.linear_probe_weighted_f1 for p in curve.points],
        marker="s",
        linestyle="--",
        label="linear probe",
    )
    ax.axhline(curve.zero_shot.weighted_f1, color="gray", linestyle=":", label="zero-shot")
    if len(set(shots)) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.set_ylim(0, 1)
    ax.set_xlabel("examples per label", **LITERAL)
    ax.set_ylabel(f"weighted F1 (mean of {curve.seeds} seed(s))", **LITERAL)
    if title:
        ax.set_title(title, **LITERAL)
    ax.legend(loc="lower right")
    return save_png(fig, path)
