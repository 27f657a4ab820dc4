"""Chart and similar-case grid: the Pillow renderer against the matplotlib one it replaced, same run.

    .venv/bin/python bench/render_bench.py [--repeats 60]

The reference (`reference_probability_chart`, `reference_png`) is the former code kept verbatim:
a private matplotlib Figure on an Agg canvas for the chart, and a lossless `optimize=True` PNG tried
before the palette fallback for the grid. Old and new run interleaved on the same inputs (a
10-label chart, the same with labels and percentages never drawn before, an uncertain 4-label
chart, a grid of six micrograph thumbnails, a grid of three flat ones), so machine noise hits both
alike. The new chart caches each string's rendered mask: the repeated-chart rows show the steady
state of a channel whose label set does not change, the "never seen" row the worst case. Prints
p50/p95 in milliseconds, the ratio and the CPU; the answer path renders one chart and one
six-case grid per image.
"""

from __future__ import annotations

import argparse
import io
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from bench.machine import cpu_name  # noqa: E402
from bot import render  # noqa: E402
from bot.reply import describe_model, format_probability, one_line, truncate  # noqa: E402
from model.identity import ModelIdentity  # noqa: E402
from model.zeroshot import Prediction, Suggestion  # noqa: E402
from store.thumbnails import encode_thumbnail  # noqa: E402
from tests.imagegen import ihc, solid  # noqa: E402

PLIP = ModelIdentity("plip", "PLIP", "vinid/plip", "67ade53ddd32195868f422585f72698ef5d15094", True)
LABELS = [
    "adenocarcinoma",
    "squamous cell carcinoma",
    "normal colon mucosa",
    "hyperplastic polyp",
    "tubular adenoma",
    "sessile serrated lesion",
    "lymphoma",
    "carcinoid tumour",
    "inflammatory bowel disease",
    "ischaemic colitis",
]


# ---------------------------------------------------------------- the former renderer, verbatim

CHART_DPI = 100
FONT_FAMILY = "DejaVu Sans"


def reference_probability_chart(prediction: Prediction, *, title: str | None = None) -> bytes:
    """bot/render.py's chart before the Pillow rewrite (matplotlib Figure + Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    suggestions = prediction.suggestions[: render.CHART_MAX_BARS]
    rows = max(1, len(suggestions))
    height_px = render.chart_height_px(rows)
    figure = Figure(figsize=(render.CHART_WIDTH_PX / CHART_DPI, height_px / CHART_DPI), dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    figure.set_facecolor("white")
    try:
        axes = figure.add_axes(
            (
                render.CHART_LEFT,
                render.CHART_BOTTOM_PX / height_px,
                render.CHART_RIGHT - render.CHART_LEFT,
                render.CHART_ROW_PX * rows / height_px,
            )
        )
        positions = [rows - 1 - rank for rank in range(len(suggestions))]
        probabilities = [min(max(s.probability, 0.0), 1.0) for s in suggestions]
        bar_colour = render.UNCERTAIN_COLOUR if prediction.uncertain else render.CERTAIN_COLOUR
        track = render.TRACK_COLOUR
        axes.barh(positions, [1.0] * len(positions), height=render.BAR_HEIGHT, color=track, linewidth=0)
        axes.barh(positions, probabilities, height=render.BAR_HEIGHT, color=bar_colour, linewidth=0)
        axes.set_xlim(0.0, 1.0)
        axes.set_ylim(-0.5, rows - 0.5)
        axes.set_yticks(
            positions,
            [truncate(one_line(s.label), render.CHART_LABEL_CHARS) for s in suggestions],
            fontsize=9,
            family=FONT_FAMILY,
            color=render.TEXT_COLOUR,
        )
        axes.tick_params(axis="y", length=0, pad=6)
        axes.set_xticks([])
        for spine in axes.spines.values():
            spine.set_visible(False)
        percent_anchor = axes.get_yaxis_transform()
        for position, probability in zip(positions, probabilities, strict=True):
            axes.text(
                1.02,
                position,
                format_probability(probability),
                transform=percent_anchor,
                va="center",
                ha="left",
                fontsize=9,
                family=FONT_FAMILY,
                color=render.TEXT_COLOUR,
                clip_on=False,
            )
        heading = truncate(one_line(title or "Label suggestions"), 44)
        if prediction.uncertain:
            heading = f"Uncertain — {heading}"
            figure.text(
                0.98,
                1 - 16 / height_px,
                "top labels are close: treat as don't know",
                ha="right",
                va="top",
                fontsize=8,
                family=FONT_FAMILY,
                color=render.MUTED_COLOUR,
            )
        figure.text(
            0.02,
            1 - 12 / height_px,
            heading,
            ha="left",
            va="top",
            fontsize=12,
            weight="bold",
            family=FONT_FAMILY,
            color=render.TEXT_COLOUR,
        )
        footer = truncate(f"Model: {describe_model(prediction.model)} · decision support only", 118)
        figure.text(
            0.02,
            10 / height_px,
            footer,
            ha="left",
            va="bottom",
            fontsize=7.5,
            family=FONT_FAMILY,
            color=render.MUTED_COLOUR,
        )
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=CHART_DPI, facecolor="white", metadata={"Software": None})
        return buffer.getvalue()
    finally:
        figure.clear()


def reference_png(image: Image.Image) -> bytes:
    """The grid's former encoding: lossless `optimize=True` PNG first, palette PNG when over budget."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() <= render.TYPICAL_MAX_BYTES:
        return buffer.getvalue()
    palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def reference_case_grid(thumbnails: list[bytes | None]) -> bytes:
    return reference_png(render.grid_canvas(thumbnails))


# ---------------------------------------------------------------- timing


def _prediction(count: int, *, uncertain: bool) -> Prediction:
    weights = [0.5**rank for rank in range(count)]
    total = sum(weights)
    suggestions = tuple(Suggestion(LABELS[i], w / total) for i, w in enumerate(weights))
    return Prediction(suggestions, uncertain, margin=0.1, entropy=0.5, model=PLIP)


def _fresh_predictions() -> Iterator[Prediction]:
    """Predictions whose labels and percentages were never drawn before: every string misses the
    chart's text cache, as for a label set typed with the command."""
    for serial in itertools.count():
        weights = [0.5**rank + serial * 1e-4 for rank in range(10)]
        total = sum(weights)
        suggestions = tuple(
            Suggestion(f"{LABELS[i]} {serial}", w / total) for i, w in enumerate(weights)
        )
        yield Prediction(suggestions, False, margin=0.1, entropy=0.5, model=PLIP)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _time_pair(
    old: Callable[[], bytes], new: Callable[[], bytes], repeats: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Wall and CPU milliseconds per call, old and new interleaved.

    CPU time (this thread's) is printed beside wall time: on a shared machine the wall clock also
    counts time spent waiting for a core.
    """
    old(), new()  # warm: imports, fonts, caches
    old_ms, new_ms, old_cpu, new_cpu = [], [], [], []
    for _ in range(repeats):
        for function, samples, cpu in ((old, old_ms, old_cpu), (new, new_ms, new_cpu)):
            start, start_cpu = time.perf_counter(), time.thread_time()
            function()
            cpu.append((time.thread_time() - start_cpu) * 1000)
            samples.append((time.perf_counter() - start) * 1000)
    return old_ms, new_ms, old_cpu, new_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument(
        "--markdown", action="store_true", help="accepted for bench/run_all.py: the table is markdown already"
    )
    args = parser.parse_args()

    slide = ihc()
    micrographs: list[bytes | None] = [
        encode_thumbnail(slide.crop((i * 50, i * 40, i * 50 + 256, i * 40 + 256))) for i in range(6)
    ]
    flat: list[bytes | None] = [encode_thumbnail(solid(c)) for c in ((210, 40, 40), (40, 170, 60))] + [None]
    ten, uncertain = _prediction(10, uncertain=False), _prediction(4, uncertain=True)
    fresh = _fresh_predictions()
    cases: list[tuple[str, Callable[[], bytes], Callable[[], bytes]]] = [
        (
            "chart, 10 labels",
            lambda: reference_probability_chart(ten, title="colon"),
            lambda: render.probability_chart(ten, title="colon"),
        ),
        (
            "chart, 10 labels never seen before (text cache cold)",
            lambda: reference_probability_chart(next(fresh)),
            lambda: render.probability_chart(next(fresh)),
        ),
        (
            "chart, 4 labels, uncertain",
            lambda: reference_probability_chart(uncertain),
            lambda: render.probability_chart(uncertain),
        ),
        (
            "grid, 6 micrographs",
            lambda: reference_case_grid(micrographs),
            lambda: render.case_grid(micrographs),
        ),
        ("grid, 2 flat + 1 missing", lambda: reference_case_grid(flat), lambda: render.case_grid(flat)),
        (
            "answer: 10-label chart + 6-case grid",
            lambda: reference_probability_chart(ten) + reference_case_grid(micrographs),
            lambda: render.probability_chart(ten) + render.case_grid(micrographs),
        ),
    ]
    print(f"Rendering, {args.repeats} interleaved runs each. CPU: {cpu_name()}\n")
    print(
        "| what | matplotlib + optimize PNG: wall p50 / p95, CPU p50 (ms) "
        "| Pillow: wall p50 / p95, CPU p50 (ms) | speed-up (wall p50) | bytes old / new |"
    )
    print("|---|---|---|---|---|")
    for name, old, new in cases:
        old_ms, new_ms, old_cpu, new_cpu = _time_pair(old, new, args.repeats)
        (old_p50, old_p95), (new_p50, new_p95) = _percentiles(old_ms), _percentiles(new_ms)
        print(
            f"| {name} | {old_p50:.1f} / {old_p95:.1f}, {statistics.median(old_cpu):.1f} "
            f"| {new_p50:.1f} / {new_p95:.1f}, {statistics.median(new_cpu):.1f} "
            f"| {old_p50 / new_p50:.1f}x | {len(old()):,} / {len(new()):,} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
