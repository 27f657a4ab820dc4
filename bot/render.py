"""Images attached to answers: the label-probability chart and the similar-case grid, as PNG bytes.

Pure functions, safe to call from worker threads (`asyncio.to_thread` in the cog): the chart uses a
private `Figure` on an Agg canvas, never pyplot, so there is no global figure registry to leak into
and no backend switch for the rest of the process; the grid is Pillow only. Sizes, DPI and fonts are
fixed so the same input gives the same pixels, and both images stay well under Discord's upload
limits (`TYPICAL_MAX_BYTES`).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.reply import describe_model, format_probability, one_line, truncate
from model.zeroshot import Prediction

log = logging.getLogger(__name__)

TYPICAL_MAX_BYTES = 200_000
"""Budget for one attachment: an answer carries two, and uploads count against Discord's limits."""

# ---------------------------------------------------------------- probability chart

CHART_DPI = 100
CHART_WIDTH_PX = 600
CHART_ROW_PX = 36
CHART_TOP_PX = 46
CHART_BOTTOM_PX = 34
CHART_MAX_BARS = 10
CHART_LEFT = 0.37
"""Fraction of the width for label names (about 30 characters at 9 pt)."""
CHART_RIGHT = 1.0 - 64 / CHART_WIDTH_PX
"""The axes end 64 px before the edge, room for "100.0%"."""
CHART_LABEL_CHARS = 30
BAR_HEIGHT = 0.56

CERTAIN_COLOUR = "#2f6fb3"
UNCERTAIN_COLOUR = "#8c8c8c"
"""Neutral grey: an uncertain answer should not look like a confident one at a glance."""
TRACK_COLOUR = "#ececec"
"""The 0-100% track behind every bar, so even a 0.1% row reads as a row."""
TEXT_COLOUR = "#222222"
MUTED_COLOUR = "#666666"
FONT_FAMILY = "DejaVu Sans"
"""Shipped with matplotlib, so the chart renders the same on every machine."""


def chart_height_px(bars: int) -> int:
    """Pixel height of a chart with `bars` rows: a title band, one 36 px row per label, a footer."""
    return CHART_TOP_PX + CHART_BOTTOM_PX + CHART_ROW_PX * max(1, bars)


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def probability_chart(prediction: Prediction, *, title: str | None = None) -> bytes:
    """A horizontal bar chart of the top suggestions (at most 10), most probable on top, as PNG.

    Every bar has its percentage beside it and a light 0-100% track behind it. When the prediction
    is uncertain the title starts with "Uncertain" and the bars are grey instead of blue. The
    footer names the model (saying "not PLIP" for local weights), because the image may be seen
    without the text around it.
    """
    suggestions = prediction.suggestions[:CHART_MAX_BARS]
    rows = max(1, len(suggestions))
    height_px = chart_height_px(rows)
    figure = Figure(figsize=(CHART_WIDTH_PX / CHART_DPI, height_px / CHART_DPI), dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    figure.set_facecolor("white")
    try:
        axes = figure.add_axes(
            (
                CHART_LEFT,
                CHART_BOTTOM_PX / height_px,
                CHART_RIGHT - CHART_LEFT,
                CHART_ROW_PX * rows / height_px,
            )
        )
        positions = [rows - 1 - rank for rank in range(len(suggestions))]  # rank 0 on top
        probabilities = [min(max(s.probability, 0.0), 1.0) for s in suggestions]
        bar_colour = UNCERTAIN_COLOUR if prediction.uncertain else CERTAIN_COLOUR
        axes.barh(positions, [1.0] * len(positions), height=BAR_HEIGHT, color=TRACK_COLOUR, linewidth=0)
        axes.barh(positions, probabilities, height=BAR_HEIGHT, color=bar_colour, linewidth=0)
        axes.set_xlim(0.0, 1.0)
        axes.set_ylim(-0.5, rows - 0.5)
        axes.set_yticks(
            positions,
            [truncate(one_line(s.label), CHART_LABEL_CHARS) for s in suggestions],
            fontsize=9,
            family=FONT_FAMILY,
            color=TEXT_COLOUR,
        )
        axes.tick_params(axis="y", length=0, pad=6)
        axes.set_xticks([])
        for spine in axes.spines.values():
            spine.set_visible(False)
        percent_anchor = axes.get_yaxis_transform()  # x in axes fraction, y in rows
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
                color=TEXT_COLOUR,
                clip_on=False,
            )
        if not suggestions:
            axes.text(0.5, 0, "no labels to show", ha="center", va="center", fontsize=9, color=MUTED_COLOUR)

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
                color=MUTED_COLOUR,
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
            color=TEXT_COLOUR,
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
            color=MUTED_COLOUR,
        )
        buffer = io.BytesIO()
        # No "Software" entry: the same chart gives the same bytes whatever matplotlib version.
        figure.savefig(buffer, format="png", dpi=CHART_DPI, facecolor="white", metadata={"Software": None})
        return buffer.getvalue()
    finally:
        figure.clear()  # drop artists now rather than at the next GC pass of a long-running bot


# ---------------------------------------------------------------- similar-case grid

CELL_PX = 200
GAP_PX = 8
GRID_COLUMNS = 3
MAX_GRID_CELLS = 12
CANVAS_RGB = (255, 255, 255)
LETTERBOX_RGB = (238, 238, 238)
"""Around a thumbnail that is not square; lighter than the placeholder so the two never mix up."""
PLACEHOLDER_RGB = (150, 150, 150)
PLACEHOLDER_TEXT_RGB = (235, 235, 235)
BADGE_RGB = (24, 24, 24)
BADGE_TEXT_RGB = (255, 255, 255)
BADGE_MARGIN_PX = 6
BADGE_SIZE_PX = 30
_MAX_THUMBNAIL_PIXELS = 4096 * 4096
"""Thumbnails are 256 px; anything much larger is not ours and is not decoded."""


def grid_size_px(cells: int) -> tuple[int, int]:
    """(width, height) of a grid of `cells` thumbnails: up to 3 per row, 8 px gaps and border."""
    columns = min(GRID_COLUMNS, max(1, cells))
    rows = max(1, math.ceil(cells / GRID_COLUMNS))
    return (columns * CELL_PX + (columns + 1) * GAP_PX, rows * CELL_PX + (rows + 1) * GAP_PX)


def cell_origin_px(index: int) -> tuple[int, int]:
    """Top-left pixel of cell `index` (0-based, row by row)."""
    row, column = divmod(index, GRID_COLUMNS)
    return (GAP_PX + column * (CELL_PX + GAP_PX), GAP_PX + row * (CELL_PX + GAP_PX))


def _decode_thumbnail(data: bytes | None) -> Image.Image | None:
    """The thumbnail fitted into a cell, or None (missing, corrupt, or not an image we made)."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > _MAX_THUMBNAIL_PIXELS:
                log.warning("thumbnail of %dx%d px ignored", image.width, image.height)
                return None
            image.draft("RGB", (CELL_PX, CELL_PX))  # JPEG: decode at reduced scale when it can
            oriented = ImageOps.exif_transpose(image)
            if "A" in oriented.getbands() or "transparency" in oriented.info:
                rgba = oriented.convert("RGBA")
                flat = Image.new("RGB", rgba.size, CANVAS_RGB)
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = oriented.convert("RGB")
            return ImageOps.contain(flat, (CELL_PX, CELL_PX), Image.Resampling.LANCZOS)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        log.warning("thumbnail cannot be decoded: %s", err)
        return None


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font: no system font lookup, identical on every host."""
    return ImageFont.load_default(size=size)


def _draw_placeholder(draw: ImageDraw.ImageDraw, left: int, top: int) -> None:
    draw.rectangle((left, top, left + CELL_PX - 1, top + CELL_PX - 1), fill=PLACEHOLDER_RGB)
    draw.text(
        (left + CELL_PX // 2, top + CELL_PX // 2),
        "no thumbnail",
        fill=PLACEHOLDER_TEXT_RGB,
        font=_font(16),
        anchor="mm",
    )


def _draw_badge(draw: ImageDraw.ImageDraw, left: int, top: int, text: str) -> None:
    """A dark rounded tag with the case number, readable on any slide colour."""
    font = _font(18)
    text_width = draw.textlength(text, font=font)
    width = max(BADGE_SIZE_PX, int(text_width) + 14)
    box = (
        left + BADGE_MARGIN_PX,
        top + BADGE_MARGIN_PX,
        left + BADGE_MARGIN_PX + width - 1,
        top + BADGE_MARGIN_PX + BADGE_SIZE_PX - 1,
    )
    draw.rounded_rectangle(box, radius=8, fill=BADGE_RGB)
    centre = ((box[0] + box[2] + 1) // 2, (box[1] + box[3] + 1) // 2)
    draw.text(centre, text, fill=BADGE_TEXT_RGB, font=font, anchor="mm")


def _png(image: Image.Image) -> bytes:
    """Lossless PNG when it fits the budget, else a 256-colour PNG (about a third of the bytes).

    Six dense 256 px micrographs make a ~470 KB RGB PNG; an octree palette keeps stain colours
    visibly unchanged at ~160 KB, while median cut on the same grid stayed over budget.
    """
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() <= TYPICAL_MAX_BYTES:
        return buffer.getvalue()
    palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def case_grid(thumbnails: Sequence[bytes | None], labels: Sequence[str] | None = None) -> bytes:
    """Thumbnails in a grid (3 per row, 200 px cells, letterboxed), each with its number badge, as PNG.

    `labels` are the badge texts and default to "1", "2", ...: they must match the numbered list of
    `reply.format_similar_cases`. A missing or unreadable thumbnail (withdrawn, never stored) becomes a
    grey "no thumbnail" cell, so the numbering never shifts.
    """
    if not thumbnails:
        raise ValueError("case_grid needs at least one thumbnail (send no grid when there are no cases)")
    if len(thumbnails) > MAX_GRID_CELLS:
        raise ValueError(f"case_grid shows at most {MAX_GRID_CELLS} cases, got {len(thumbnails)}")
    badge_texts = [str(n) for n in range(1, len(thumbnails) + 1)] if labels is None else list(labels)
    if len(badge_texts) != len(thumbnails):
        raise ValueError(f"{len(thumbnails)} thumbnails but {len(badge_texts)} labels")

    canvas = Image.new("RGB", grid_size_px(len(thumbnails)), CANVAS_RGB)
    draw = ImageDraw.Draw(canvas)
    for index, (data, badge) in enumerate(zip(thumbnails, badge_texts, strict=True)):
        left, top = cell_origin_px(index)
        thumbnail = _decode_thumbnail(data)
        if thumbnail is None:
            _draw_placeholder(draw, left, top)
        else:
            draw.rectangle((left, top, left + CELL_PX - 1, top + CELL_PX - 1), fill=LETTERBOX_RGB)
            offset = ((CELL_PX - thumbnail.width) // 2, (CELL_PX - thumbnail.height) // 2)
            canvas.paste(thumbnail, (left + offset[0], top + offset[1]))
        _draw_badge(draw, left, top, truncate(one_line(badge), 6))
    return _png(canvas)
