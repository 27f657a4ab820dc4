"""The chart and the case grid, checked on their pixels as a person would look at them."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bot import render
from bot.render import case_grid, cell_origin_px, grid_size_px, probability_chart
from model.identity import ModelIdentity
from model.zeroshot import Prediction, Suggestion
from store.thumbnails import encode_thumbnail
from tests.imagegen import encode, ihc, solid

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLIP = ModelIdentity("plip", "PLIP", "vinid/plip", "67ade53ddd32195868f422585f72698ef5d15094", True)
LOCAL = ModelIdentity("local", "local checkpoint tiny-random-clip", "/srv/ckpt", "sha256:" + "ab" * 32)


def prediction(
    probabilities: list[float], *, uncertain: bool = False, model: ModelIdentity = PLIP
) -> Prediction:
    suggestions = tuple(Suggestion(f"label number {i}", p) for i, p in enumerate(probabilities))
    return Prediction(suggestions, uncertain, margin=0.1, entropy=0.5, model=model)


def pixels(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def hex_rgb(colour: str) -> np.ndarray:
    value = colour.lstrip("#")
    return np.array([int(value[i : i + 2], 16) for i in (0, 2, 4)])


def matches(image: np.ndarray, rgb: np.ndarray | tuple[int, int, int], tolerance: int = 6) -> np.ndarray:
    return np.abs(image - np.asarray(rgb)).max(axis=-1) <= tolerance


def row_runs(mask_rows: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True rows."""
    runs, start = [], None
    for y, on in enumerate(mask_rows):
        if on and start is None:
            start = y
        elif not on and start is not None:
            runs.append((start, y))
            start = None
    if start is not None:
        runs.append((start, len(mask_rows)))
    return runs


# ---------------------------------------------------------------- probability chart


@pytest.mark.parametrize("bars", [1, 3, 10])
def test_chart_is_a_png_of_the_documented_size(bars: int) -> None:
    png = probability_chart(prediction([1.0 / bars] * bars))
    image = pixels(png)
    assert image.shape[:2] == (80 + 36 * bars, 600)
    assert len(png) < render.TYPICAL_MAX_BYTES


def test_chart_shows_at_most_ten_labels() -> None:
    image = pixels(probability_chart(prediction([1 / 14] * 14)))
    assert image.shape[0] == 80 + 36 * 10


def test_chart_has_one_bar_per_label_most_probable_on_top_with_proportional_lengths() -> None:
    probabilities = [0.55, 0.25, 0.12, 0.05, 0.03]
    image = pixels(probability_chart(prediction(probabilities), title="colon biopsies"))
    bar = matches(image, hex_rgb(render.CERTAIN_COLOUR))
    track = matches(image, hex_rgb(render.TRACK_COLOUR))
    runs = row_runs((bar | track).sum(axis=1) > 100)
    assert len(runs) == len(probabilities)
    assert all(15 <= stop - start <= 25 for start, stop in runs)  # ~0.56 of a 36 px row
    lengths = [bar[(start + stop) // 2].sum() for start, stop in runs]
    assert lengths == sorted(lengths, reverse=True)
    track_length = (bar | track)[(runs[0][0] + runs[0][1]) // 2].sum()
    for length, probability in zip(lengths, probabilities, strict=True):
        assert abs(length / track_length - probability) <= 0.015


def test_chart_prints_a_percentage_beside_every_bar_and_the_model_at_the_bottom() -> None:
    image = pixels(probability_chart(prediction([0.6, 0.3, 0.1])))
    dark = image.max(axis=-1) < 120
    axes_right = int(render.CHART_RIGHT * render.CHART_WIDTH_PX)
    track = matches(image, hex_rgb(render.TRACK_COLOUR))
    for start, stop in row_runs(track.sum(axis=1) > 100):
        assert dark[start:stop, axes_right + 2 :].sum() > 20, "no percentage text beside a bar"
    footer = image[-render.CHART_BOTTOM_PX :]
    assert (footer.max(axis=-1) < 160).sum() > 100, "no model line in the footer"


def test_uncertain_chart_is_grey_and_certain_chart_is_coloured() -> None:
    certain = pixels(probability_chart(prediction([0.9, 0.1])))
    uncertain = pixels(probability_chart(prediction([0.52, 0.48], uncertain=True)))

    def saturated(image: np.ndarray) -> int:
        return int(((image.max(axis=-1) - image.min(axis=-1)) > 24).sum())

    assert saturated(certain) > 1000
    assert matches(certain, hex_rgb(render.CERTAIN_COLOUR)).sum() > 1000
    assert saturated(uncertain) == 0
    assert matches(uncertain, hex_rgb(render.UNCERTAIN_COLOUR)).sum() > 1000


def test_uncertain_chart_carries_a_marker_in_the_title_band() -> None:
    """The uncertain title is longer ("Uncertain — ...") and has a note at the top right."""
    certain = pixels(probability_chart(prediction([0.52, 0.48])))
    uncertain = pixels(probability_chart(prediction([0.52, 0.48], uncertain=True)))
    band = slice(0, render.CHART_TOP_PX)
    right_half = slice(300, 600)
    assert (certain[band, right_half].max(axis=-1) < 160).sum() == 0
    assert (uncertain[band, right_half].max(axis=-1) < 160).sum() > 100


def test_chart_is_deterministic_and_handles_odd_input() -> None:
    odd = Prediction(
        (Suggestion("x" * 100 + "\n@everyone", 1.2), Suggestion("", -0.1)),
        False,
        margin=1.0,
        entropy=0.0,
        model=LOCAL,
    )
    first = probability_chart(odd, title="t" * 300)
    assert first == probability_chart(odd, title="t" * 300)
    assert pixels(first).shape[:2] == (80 + 36 * 2, 600)
    empty = Prediction((), False, margin=1.0, entropy=0.0, model=PLIP)
    assert pixels(probability_chart(empty)).shape[:2] == (80 + 36, 600)


def test_rendering_never_touches_matplotlib() -> None:
    """A cog imports this module in the bot process: no matplotlib (its import alone costs ~100 ms,
    and its math parser would read `$...$` in a label), no pyplot, no global backend switch."""
    code = (
        "import sys\n"
        "from bot.render import probability_chart, case_grid\n"
        "from tests.bot.test_render import prediction\n"
        "probability_chart(prediction([0.7, 0.3]))\n"
        "case_grid([None])\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=render.__file__.rsplit("/bot/", 1)[0])


# ---------------------------------------------------------------- case grid

RED, GREEN, BLUE, YELLOW = (210, 40, 40), (40, 170, 60), (40, 70, 200), (230, 200, 30)


def thumb(colour: tuple[int, int, int], size: tuple[int, int] = (256, 256)) -> bytes:
    """A solid thumbnail, encoded the way the thumbnail store encodes them (JPEG)."""
    return encode_thumbnail(solid(colour, size))


def cell_pixel(image: np.ndarray, index: int, dx: int, dy: int) -> np.ndarray:
    left, top = cell_origin_px(index)
    return image[top + dy, left + dx]


@pytest.mark.parametrize(
    ("cells", "size"), [(1, (216, 216)), (3, (632, 216)), (4, (632, 424)), (7, (632, 632))]
)
def test_grid_size_fits_three_per_row(cells: int, size: tuple[int, int]) -> None:
    png = case_grid([thumb(RED)] * cells)
    image = pixels(png)
    assert (image.shape[1], image.shape[0]) == size == grid_size_px(cells)


def test_grid_puts_each_thumbnail_in_its_cell_and_grey_placeholders_for_missing_ones() -> None:
    thumbnails = [thumb(RED), thumb(GREEN), None, thumb(BLUE), b"not a jpeg"]
    image = pixels(case_grid(thumbnails, ["1", "2", "3", "4", "5"]))
    centre = render.CELL_PX // 2
    for index, colour in [(0, RED), (1, GREEN), (3, BLUE)]:
        assert matches(cell_pixel(image, index, centre, centre), colour, tolerance=8).all()
    for index in (2, 4):  # missing and unreadable: grey, never a shifted neighbour
        corner = cell_pixel(image, index, render.CELL_PX - 10, render.CELL_PX - 10)
        assert matches(corner, render.PLACEHOLDER_RGB, tolerance=2).all()
    # the sixth slot of the 3x2 grid stays empty canvas
    assert matches(cell_pixel(image, 5, centre, centre), render.CANVAS_RGB, tolerance=0).all()


def test_grid_letterboxes_non_square_thumbnails() -> None:
    wide, tall = thumb(YELLOW, (256, 128)), thumb(BLUE, (100, 200))
    image = pixels(case_grid([wide, tall]))
    half = render.CELL_PX // 2
    assert matches(cell_pixel(image, 0, half, half), YELLOW, tolerance=8).all()
    assert matches(cell_pixel(image, 0, half, 20), render.LETTERBOX_RGB, tolerance=2).all()
    assert matches(cell_pixel(image, 0, half, render.CELL_PX - 20), render.LETTERBOX_RGB, tolerance=2).all()
    assert matches(cell_pixel(image, 1, half, 20), BLUE, tolerance=8).all()
    assert matches(cell_pixel(image, 1, 20, render.CELL_PX - 20), render.LETTERBOX_RGB, tolerance=2).all()


def test_every_cell_has_a_readable_number_badge() -> None:
    image = pixels(case_grid([thumb(YELLOW), None, thumb(GREEN), thumb(RED)]))
    badges = []
    for index in range(4):
        left, top = cell_origin_px(index)
        box = image[top + 6 : top + 36, left + 6 : left + 36]
        assert matches(box, render.BADGE_RGB, tolerance=10).mean() > 0.5, f"no badge in cell {index + 1}"
        assert matches(box, render.BADGE_TEXT_RGB, tolerance=40).sum() > 10, "badge has no number"
        badges.append(box)
    assert not np.array_equal(badges[0], badges[1]), "badges 1 and 2 look the same"
    # the same number on another background draws the same badge (inside its rounded corners)
    again = pixels(case_grid([thumb(BLUE)]))
    assert np.array_equal(again[14:44, 14:44][4:26, 4:26], badges[0][4:26, 4:26])


def test_grid_of_real_histology_stays_small_and_deterministic() -> None:
    slide = ihc()
    thumbnails = [
        encode_thumbnail(slide.crop((i * 50, i * 40, i * 50 + 256, i * 40 + 256))) for i in range(6)
    ]
    png = case_grid(thumbnails)
    assert png == case_grid(thumbnails)
    assert len(png) < render.TYPICAL_MAX_BYTES
    image = pixels(png)
    assert image.shape[:2] == (424, 632)
    # still the slide's colours (brown DAB / blue haematoxylin), not a flattened placeholder
    cell = image[8:208, 8:208]
    assert cell.std() > 20


def test_grid_accepts_png_and_transparent_thumbnails() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    png = case_grid([encode(rgba), encode(solid(GREEN, mode="L"))])
    image = pixels(png)
    centre = render.CELL_PX // 2
    assert matches(cell_pixel(image, 0, centre, centre), render.CANVAS_RGB, tolerance=0).all()


def test_grid_rejects_what_it_cannot_number() -> None:
    with pytest.raises(ValueError, match="at least one"):
        case_grid([])
    with pytest.raises(ValueError, match="labels"):
        case_grid([None, None], ["1"])
    with pytest.raises(ValueError, match="at most"):
        case_grid([None] * (render.MAX_GRID_CELLS + 1))


# ---------------------------------------------------------------- text is literal

HOSTILE_LABELS = [
    "$x^2$",
    r"$\frac{a$",  # an unbalanced math expression: matplotlib's parser raised on it
    r"$\undefinedcommand$",
    "**bold** @everyone <@123>",
    "`code` ||spoiler|| [link](http://x)",
    "abc\u202edef",
    "שלום עולם",
    "x" * 500,
]


def _label_ink(png: bytes) -> int:
    """Dark pixels in the label column of the first row."""
    image = pixels(png)
    top = render.CHART_TOP_PX
    column = image[top : top + render.CHART_ROW_PX, : int(render.CHART_LEFT * render.CHART_WIDTH_PX)]
    return int((column.max(axis=-1) < 140).sum())


def test_hostile_labels_render_literally_and_never_fail() -> None:
    chart = probability_chart(
        Prediction(
            tuple(Suggestion(label, 1 / len(HOSTILE_LABELS)) for label in HOSTILE_LABELS),
            False,
            margin=0.0,
            entropy=1.0,
            model=PLIP,
        ),
        title="$\\frac{$ **title**",
    )
    assert pixels(chart).shape[:2] == (80 + 36 * len(HOSTILE_LABELS), 600)


def test_dollar_signs_are_drawn_not_parsed() -> None:
    """`$x^2$` shows its dollar signs and caret (more ink than "x2"), not a typeset superscript."""

    def ink(label: str) -> int:
        one = Prediction((Suggestion(label, 1.0),), False, margin=1.0, entropy=0.0, model=PLIP)
        return _label_ink(probability_chart(one))

    assert ink("$x^2$") > ink("x^2") > ink("x2") > 0
    assert ink("$x^2$") == ink("$x^2$")


def test_long_labels_stay_inside_the_label_column() -> None:
    wide = (Suggestion("W" * 200, 0.6), Suggestion("m" * 40, 0.4))
    image = pixels(probability_chart(Prediction(wide, False, margin=0.2, entropy=0.5, model=PLIP)))
    assert (image[:, :4].max(axis=-1) < 200).sum() == 0, "a label ran off the left edge"
