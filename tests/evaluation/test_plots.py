"""The confusion-matrix and reliability PNGs, checked as images: size, cell colours, axis labels."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from evaluation.metrics import calibration
from evaluation.plots import (
    BAR_COLOR,
    CONFUSION_CMAP,
    DPI,
    confusion_figure,
    confusion_size_inches,
    reliability_figure,
    save_png,
)

# mathtext would mangle the middle two; the last is as long as Kather's longest name
LABELS = ["adipose tissue", "$5 tip_x^2", "50% tumour", "colorectal adenocarcinoma epithelium"]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _to_pixel(fig: Figure, ax: object, x: float, y: float) -> tuple[int, int]:
    """Data coordinates -> (row, column) in the saved PNG (display y runs upwards)."""
    px, py = ax.transData.transform((x, y))  # type: ignore[attr-defined]
    height = fig.get_size_inches()[1] * DPI
    return round(height - py), round(px)


def _region_has_ink(pixels: np.ndarray, fig: Figure, artist: object) -> bool:
    box = artist.get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]
    height, width = pixels.shape[:2]
    if box.x0 < 0 or box.y0 < 0 or box.x1 > width or box.y1 > height:
        return False  # cut off at the edge of the picture
    rows = slice(max(0, int(height - box.y1)), int(height - box.y0) + 1)
    cols = slice(max(0, int(box.x0)), int(box.x1) + 1)
    region = pixels[rows, cols]
    return region.size > 0 and int(region.min()) < 100  # dark text on white


def test_confusion_png_size_cells_and_labels(tmp_path: Path) -> None:
    confusion = np.array([[9, 1, 0, 0], [2, 6, 2, 0], [0, 0, 5, 5], [0, 0, 0, 0]])
    fig = confusion_figure(confusion, LABELS, title="tiny random model: test")
    path = save_png(fig, tmp_path / "confusion.png")
    pixels = _pixels(path)

    width_in, height_in = confusion_size_inches(len(LABELS), max(map(len, LABELS)))
    assert pixels.shape[:2] == (int(height_in * DPI), int(width_in * DPI))  # Agg truncates

    ax = fig.axes[0]
    cmap = matplotlib.colormaps[CONFUSION_CMAP]
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    for i in range(4):
        for j in range(4):
            # off-centre, away from the count printed in the middle of the cell
            row, col = _to_pixel(fig, ax, j - 0.35, i - 0.35)
            expected = np.round(np.array(cmap(share[i, j])[:3]) * 255)
            assert np.abs(pixels[row, col] - expected).max() <= 2, (i, j, pixels[row, col], expected)
    # the darkest cell is the full row (9 of 10), the last row (no examples) is the lightest colour
    assert pixels[_to_pixel(fig, ax, -0.35, -0.35)].sum() < pixels[_to_pixel(fig, ax, 1 - 0.35, -0.35)].sum()

    tick_texts = [t.get_text() for t in ax.get_xticklabels()]
    assert tick_texts == LABELS and [t.get_text() for t in ax.get_yticklabels()] == LABELS
    for text in [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label, ax.yaxis.label, ax.title]:
        assert text.get_parse_math() is False
        assert _region_has_ink(pixels, fig, text), text.get_text()
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "true label"
    counts = sorted(t.get_text() for t in ax.texts)
    assert counts == sorted(str(v) for v in confusion.ravel())


def test_confusion_figure_refuses_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_figure(np.zeros((2, 3)), ["a", "b"])


def test_reliability_png_bars_follow_accuracy(tmp_path: Path) -> None:
    # Bin (0.6, 0.8] at accuracy 0.5, bin (0.8, 1.0] at accuracy 1.0 (see test_metrics for the ECE).
    probs = np.array([[0.7, 0.3]] * 4 + [[0.1, 0.9]])
    result = calibration(probs, np.array([0, 0, 1, 1, 1]), n_bins=5)
    fig = reliability_figure(result, title="$ECE$ demo")
    path = save_png(fig, tmp_path / "reliability.png")
    pixels = _pixels(path)
    assert pixels.shape[:2] == (600, 600)
    ax = fig.axes[0]
    bar = np.array(matplotlib.colors.to_rgb(BAR_COLOR)) * 255
    # inside the accuracy bar of bin 4 (x 0.6..0.8) below 0.5, above it the gap to 0.7 (not bar colour)
    inside = pixels[_to_pixel(fig, ax, 0.65, 0.25)]
    above = pixels[_to_pixel(fig, ax, 0.65, 0.6)]
    empty = pixels[_to_pixel(fig, ax, 0.25, 0.1)]  # an empty bin: no bar
    assert np.abs(inside - bar).max() <= 2
    assert np.abs(above - bar).max() > 30
    assert np.abs(empty - 255).max() <= 2
    assert np.abs(pixels[_to_pixel(fig, ax, 0.85, 0.8)] - bar).max() <= 2  # bin 5's bar reaches 1.0
    assert ax.get_xlabel().startswith("confidence") and ax.get_ylabel() == "accuracy"
    assert "$ECE$ demo" in ax.get_title() and "ECE 0.180" in ax.get_title()
    for text in (ax.xaxis.label, ax.yaxis.label, ax.title):
        assert text.get_parse_math() is False
        assert _region_has_ink(pixels, fig, text)
