"""The harness's pictures: a confusion matrix and a reliability diagram, as PNG files.

Figures are built on matplotlib's object API with the Agg canvas (no pyplot, no global backend, safe in
threads and on servers without a display). Every piece of text is literal: label names such as "$5 tip"
or "50% tumour" are never parsed as mathtext.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluation.metrics import Calibration

DPI = 100
CONFUSION_CMAP = "Blues"
BAR_COLOR = "#3b75af"
GAP_COLOR = "#d9534f"
LITERAL = {"parse_math": False}


CHAR_INCHES = 0.085  # about one character of 10-point DejaVu Sans


def confusion_size_inches(n_classes: int, longest_label: int = 0) -> tuple[float, float]:
    """Room for n cells and for the longest class name on both axes (the x names run at 45 degrees).

    The grid is capped so a 100-label set stays a sane file; names are capped at 60 characters' room.
    """
    grid = min(2.5 + 0.6 * n_classes, 30.0)
    name = CHAR_INCHES * min(longest_label, 60)
    return grid + name + 2.5, grid + 0.75 * name + 1.2


def confusion_figure(confusion: np.ndarray, labels: Sequence[str], title: str = "") -> Figure:
    """Rows are true classes, columns predictions; colour is the row share, text the count."""
    counts = np.asarray(confusion)
    n = len(labels)
    if counts.shape != (n, n):
        raise ValueError(f"confusion has shape {counts.shape}, expected ({n}, {n})")
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    longest = max(len(label) for label in labels)
    fig = Figure(figsize=confusion_size_inches(n, longest), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap=CONFUSION_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), list(labels), rotation=45, ha="right", rotation_mode="anchor", **LITERAL)
    ax.set_yticks(range(n), list(labels), **LITERAL)
    ax.set_xlabel("predicted label", **LITERAL)
    ax.set_ylabel("true label", **LITERAL)
    if title:
        ax.set_title(title, **LITERAL)
    font_size = 10 if n <= 12 else max(4, 10 - (n - 12) // 4)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(int(counts[i, j])),
                ha="center",
                va="center",
                fontsize=font_size,
                color="white" if share[i, j] > 0.5 else "black",
                **LITERAL,
            )
    return fig


def reliability_figure(calibration: Calibration, title: str = "") -> Figure:
    """Accuracy per confidence bin next to the diagonal of perfect calibration; gaps in red."""
    fig = Figure(figsize=(6.0, 6.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    filled = [b for b in calibration.bins if b.count]
    lowers = [b.lower for b in filled]
    widths = [b.upper - b.lower for b in filled]
    accuracy = [b.accuracy for b in filled]
    confidence = [b.confidence for b in filled]
    ax.bar(lowers, accuracy, width=widths, align="edge", color=BAR_COLOR, edgecolor="black", label="accuracy")
    ax.bar(
        lowers,
        np.subtract(confidence, accuracy),
        bottom=accuracy,
        width=widths,
        align="edge",
        color=GAP_COLOR,
        alpha=0.35,
        edgecolor=GAP_COLOR,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence (top-1 probability)", **LITERAL)
    ax.set_ylabel("accuracy", **LITERAL)
    heading = f"ECE {calibration.ece:.3f}"
    ax.set_title(f"{title}\n{heading}" if title else heading, **LITERAL)
    fig.legend(loc="outside lower center", ncols=3, fontsize=9)  # never over a bar
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write the figure at its own size (no tight bounding box, so the pixel size is predictable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def write_confusion_png(confusion: np.ndarray, labels: Sequence[str], path: Path, title: str = "") -> Path:
    """Render and save a confusion matrix."""
    return save_png(confusion_figure(confusion, labels, title), path)


def write_reliability_png(calibration: Calibration, path: Path, title: str = "") -> Path:
    """Render and save a reliability diagram."""
    return save_png(reliability_figure(calibration, title), path)
