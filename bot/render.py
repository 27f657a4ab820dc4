"""Images attached to answers: the label-probability chart and the similar-case grid, as PNG bytes.

Pure functions, safe to call from worker threads (`asyncio.to_thread` in the cog). Both images are
drawn with Pillow directly: a bar chart is a few rectangles and strings, and drawing them costs a
few milliseconds where a matplotlib figure cost tens (bench/render_bench.py measures both). Text is
drawn as given, so a label such as `$x^2$` is shown literally, never parsed as math. Sizes and
fonts are fixed (DejaVu Sans, as shipped with matplotlib, else Pillow's bundled font) so the same
input gives the same pixels, and both images stay well under Discord's upload limits
(`TYPICAL_MAX_BYTES`).
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.reply import describe_model, format_probability, one_line, truncate
from model.zeroshot import Prediction

log = logging.getLogger(__name__)

TYPICAL_MAX_BYTES = 200_000
"""Budget for one attachment: an answer carries two, and uploads count against Discord's limits."""

# ---------------------------------------------------------------- probability chart

CHART_WIDTH_PX = 600
CHART_ROW_PX = 36
CHART_TOP_PX = 46
CHART_BOTTOM_PX = 34
CHART_MAX_BARS = 10
CHART_LEFT = 0.37
"""Fraction of the width for label names (about 30 characters at 12.5 px)."""
CHART_RIGHT = 1.0 - 64 / CHART_WIDTH_PX
"""The bars end 64 px before the edge, room for "100.0%"."""
CHART_LABEL_CHARS = 30
BAR_HEIGHT = 0.56
"""Fraction of a row the bar fills."""
LABEL_PAD_PX = 6
"""Between a label's last character and its bar."""
UNCERTAIN_NOTE = "top labels are close: treat as don't know"

CERTAIN_COLOUR = "#2f6fb3"
UNCERTAIN_COLOUR = "#8c8c8c"
"""Neutral grey: an uncertain answer should not look like a confident one at a glance."""
TRACK_COLOUR = "#ececec"
"""The 0-100% track behind every bar, so even a 0.1% row reads as a row."""
TEXT_COLOUR = "#222222"
MUTED_COLOUR = "#666666"

# Text sizes in pixels: the 9, 12, 8 and 7.5 pt of the former 100-dpi matplotlib chart.
LABEL_FONT_PX = 12.5
TITLE_FONT_PX = 16.7
NOTE_FONT_PX = 11.1
FOOTER_FONT_PX = 10.4

_FONT_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}


def chart_height_px(bars: int) -> int:
    """Pixel height of a chart with `bars` rows: a title band, one 36 px row per label, a footer."""
    return CHART_TOP_PX + CHART_BOTTOM_PX + CHART_ROW_PX * max(1, bars)


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


@cache
def _font_path(bold: bool) -> str | None:
    """DejaVu Sans from matplotlib's package data, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / _FONT_FILES[bold]
        if path.is_file():
            return str(path)
    return None


@cache
def _chart_font(size_px: float, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font loaded once per size and weight (loading a face costs about a millisecond)."""
    path = _font_path(bold)
    if path is None:
        log.warning("DejaVu Sans not found; the chart uses Pillow's bundled font")
        return ImageFont.load_default(size=size_px)
    return ImageFont.truetype(path, size_px)


def _fit(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width_px: float
) -> str:
    """`text`, shortened with "…" until it is at most `width_px` wide in `font`."""
    if draw.textlength(text, font=font) <= width_px:
        return text
    low, high = 0, len(text)  # the longest prefix that fits, with its ellipsis
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle].rstrip() + "…", font=font) <= width_px:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…"


MOVED_COLOUR = "#b35c00"
MOVED_UP, MOVED_DOWN = "▲", "▼"
MOVED_HEADING = "Label suggestions · ▲▼ moved by examples"


def probability_chart(
    prediction: Prediction, *, title: str | None = None, moved: Mapping[str, float] | None = None
) -> bytes:
    """A horizontal bar chart of the top suggestions (at most 10), most probable on top, as PNG.

    Every bar has its percentage beside it and a light 0-100% track behind it. When the prediction
    is uncertain the title starts with "Uncertain" and the bars are grey instead of blue. The
    footer names the model (saying "not PLIP" for local weights), because the image may be seen
    without the text around it. Labels and the title are drawn literally (no math, no markup).
    `moved` (label -> change in probability) marks the labels the server's confirmed examples moved:
    an arrow before the label, in another colour, and a heading that says so.
    """
    suggestions = prediction.suggestions[:CHART_MAX_BARS]
    rows = max(1, len(suggestions))
    height_px = chart_height_px(rows)
    image = Image.new("P", (CHART_WIDTH_PX, height_px), _WHITE_INDEX)
    image.putpalette(_chart_palette())
    draw = ImageDraw.Draw(image)
    label_font = _chart_font(LABEL_FONT_PX)

    bars_left = round(CHART_LEFT * CHART_WIDTH_PX)
    bars_right = round(CHART_RIGHT * CHART_WIDTH_PX)
    bars_width = bars_right - bars_left
    bar_px = round(BAR_HEIGHT * CHART_ROW_PX)
    bar_index = _UNCERTAIN_INDEX if prediction.uncertain else _CERTAIN_INDEX
    for rank, suggestion in enumerate(suggestions):
        centre = CHART_TOP_PX + rank * CHART_ROW_PX + CHART_ROW_PX // 2
        top, bottom = centre - bar_px // 2, centre - bar_px // 2 + bar_px - 1
        probability = min(max(suggestion.probability, 0.0), 1.0)
        draw.rectangle((bars_left, top, bars_right - 1, bottom), fill=_TRACK_INDEX)
        filled = round(probability * bars_width)
        if filled > 0:
            draw.rectangle((bars_left, top, bars_left + filled - 1, bottom), fill=bar_index)
        label = truncate(one_line(suggestion.label), CHART_LABEL_CHARS)
        change = (moved or {}).get(suggestion.label)
        if change is not None:
            label = f"{MOVED_UP if change > 0 else MOVED_DOWN} {label}"
        label = _fit(draw, label, label_font, bars_left - LABEL_PAD_PX - 4)
        at = (bars_left - LABEL_PAD_PX, centre)
        if change is None:
            _text(image, at, label, LABEL_FONT_PX, TEXT_COLOUR, anchor="rm")
        else:
            _moved_text(image, at, label, LABEL_FONT_PX, anchor="rm")
        at = (bars_right + round(0.02 * bars_width), centre)
        _text(image, at, format_probability(probability), LABEL_FONT_PX, TEXT_COLOUR, anchor="lm")
    if not suggestions:
        at = ((bars_left + bars_right) // 2, CHART_TOP_PX + CHART_ROW_PX // 2)
        _text(image, at, "no labels to show", LABEL_FONT_PX, MUTED_COLOUR, anchor="mm")

    heading = truncate(one_line(title or (MOVED_HEADING if moved else "Label suggestions")), 44)
    heading_width = CHART_WIDTH_PX - 24
    if prediction.uncertain:
        heading = f"Uncertain — {heading}"
        note_right = round(0.98 * CHART_WIDTH_PX)
        _text(image, (note_right, 16), UNCERTAIN_NOTE, NOTE_FONT_PX, MUTED_COLOUR, anchor="ra")
        note_width = draw.textlength(UNCERTAIN_NOTE, font=_chart_font(NOTE_FONT_PX))
        heading_width = note_right - note_width - 12 - 16
    heading = _fit(draw, heading, _chart_font(TITLE_FONT_PX, bold=True), heading_width)
    _text(image, (12, 12), heading, TITLE_FONT_PX, TEXT_COLOUR, anchor="la", bold=True)
    footer = truncate(f"Model: {describe_model(prediction.model)} · decision support only", 118)
    footer = _fit(draw, footer, _chart_font(FOOTER_FONT_PX), CHART_WIDTH_PX - 24)
    _text(image, (12, height_px - 10), footer, FOOTER_FONT_PX, MUTED_COLOUR, anchor="ld")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=CHART_PNG_LEVEL)
    return buffer.getvalue()


# The chart is a palette image: one byte per pixel is a third of the PNG work of RGB. Index i is the
# grey (i, i, i), so anti-aliased grey text on white, blended index by index, lands on the right grey;
# text never blends below TEXT_COLOUR's grey (0x22), which leaves the low indices free for the bar
# colours and a ramp from white to MOVED_COLOUR.
_WHITE_INDEX = 255
_CERTAIN_INDEX, _UNCERTAIN_INDEX, _TRACK_INDEX = 1, 2, 3
_MOVED_RAMP_START, _MOVED_RAMP_STEPS = 4, 30


def _grey(colour: str) -> int:
    red, green, blue = _hex_to_rgb(colour)
    if not red == green == blue:
        raise ValueError(f"chart text colours must be greys, got {colour}")
    return red


@cache
def _chart_palette() -> list[int]:
    palette = [level for grey in range(256) for level in (grey, grey, grey)]
    for index, colour in (
        (_CERTAIN_INDEX, CERTAIN_COLOUR),
        (_UNCERTAIN_INDEX, UNCERTAIN_COLOUR),
        (_TRACK_INDEX, TRACK_COLOUR),
    ):
        palette[3 * index : 3 * index + 3] = _hex_to_rgb(colour)
    moved = _hex_to_rgb(MOVED_COLOUR)
    for step in range(_MOVED_RAMP_STEPS):
        weight = (step + 1) / _MOVED_RAMP_STEPS
        index = _MOVED_RAMP_START + step
        palette[3 * index : 3 * index + 3] = [round(255 + (c - 255) * weight) for c in moved]
    return palette


@lru_cache(maxsize=1024)
def _text_mask(text: str, size_px: float, bold: bool, anchor: str) -> tuple[Image.Image, int, int]:
    """`text` rendered once as an anti-aliased mask, with its offset from the anchor point.

    Cached: a channel's labels, the percentages, titles and model lines recur in every answer, and
    rasterising glyphs is most of the cost of drawing text. A few hundred KB at most.
    """
    font = _chart_font(size_px, bold)
    left, top, right, bottom = (int(v) for v in font.getbbox(text, anchor=anchor))
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor=anchor)
    return mask, left, top


def _text(
    image: Image.Image,
    at: tuple[int, int],
    text: str,
    size_px: float,
    colour: str,
    *,
    anchor: str,
    bold: bool = False,
) -> None:
    """Grey `text` drawn on the white chart (see the palette note)."""
    mask, left, top = _text_mask(text, size_px, bold, anchor)
    image.paste(_grey(colour), (at[0] + left, at[1] + top), mask)


def _moved_text(image: Image.Image, at: tuple[int, int], text: str, size_px: float, *, anchor: str) -> None:
    """`text` in MOVED_COLOUR: its coverage mapped onto the white-to-MOVED_COLOUR ramp."""
    mask, left, top = _text_mask(text, size_px, False, anchor)
    steps = _MOVED_RAMP_STEPS
    shade = mask.point(lambda a: _MOVED_RAMP_START + max(0, round(a * steps / 255) - 1))
    covered = mask.point(lambda a: 255 if round(a * steps / 255) > 0 else 0)
    image.paste(shade, (at[0] + left, at[1] + top), covered)


CHART_PNG_LEVEL = 1
"""zlib level for the chart: flat colours compress almost as well at 1 as at 6 (~30 KB), in less time."""


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
            ImageOps.exif_transpose(image, in_place=True)  # no copy unless it really rotates
            if "A" in image.getbands() or "transparency" in image.info:
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, CANVAS_RGB)
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = image if image.mode == "RGB" else image.convert("RGB")
            # Bilinear is Pillow's antialiased triangle filter: for 256 -> 200 px it looks the
            # same as Lanczos at half the time.
            return ImageOps.contain(flat, (CELL_PX, CELL_PX), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        log.warning("thumbnail cannot be decoded: %s", err)
        return None


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font: no system font lookup, identical on every host; loaded once per size."""
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


_FEW_COLOURS = 4096
"""Flat drawings (placeholders, badges, solid test images) have fewer; a micrograph has far more."""
GRID_PNG_LEVEL = 1
"""zlib level for grids: palette images of micrographs shrink < 3% more at level 6, at 3x the time."""


def _png(image: Image.Image) -> bytes:
    """Lossless PNG for flat pictures that fit the budget, else a 256-colour PNG.

    Six dense 256 px micrographs make a ~470 KB RGB PNG, over the budget whatever the zlib effort,
    so a grid with photographic content (more than `_FEW_COLOURS` colours, counted in well under a
    millisecond) goes straight to an octree palette, which keeps stain colours visibly unchanged
    at ~160 KB; median cut on the same grid stayed over budget.
    """
    if image.getcolors(_FEW_COLOURS) is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=6)
        if buffer.tell() <= TYPICAL_MAX_BYTES:
            return buffer.getvalue()
    palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", compress_level=GRID_PNG_LEVEL)
    return buffer.getvalue()


def case_grid(thumbnails: Sequence[bytes | None], labels: Sequence[str] | None = None) -> bytes:
    """Thumbnails in a grid (3 per row, 200 px cells, letterboxed), each with its number badge, as PNG.

    `labels` are the badge texts and default to "1", "2", ...: they must match the numbered list of
    `reply.format_similar_cases`. A missing or unreadable thumbnail (withdrawn, never stored) becomes a
    grey "no thumbnail" cell, so the numbering never shifts.
    """
    return _png(grid_canvas(thumbnails, labels))


def grid_canvas(thumbnails: Sequence[bytes | None], labels: Sequence[str] | None = None) -> Image.Image:
    """The picture `case_grid` encodes, as an RGB image (same arguments, same checks)."""
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
    return canvas
