"""Text burned into an image (slide labels, requisition forms, screenshots of reports), read with the
Tesseract OCR engine so the PHI screen can look at it.

Tesseract runs as a subprocess (the `tesseract` binary, Debian package tesseract-ocr), not through a
Python binding: a subprocess can be given a hard time limit and killed, and a crash in it cannot
take a worker down. The image is reduced to grey levels and downscaled so its longer side is at most
`max_side` pixels before it is sent (a label is legible at that size; OCR time grows with pixels),
and Tesseract is held to one thread, because workers already run several tasks at once.

Only the image's ink is read (dark grey-scale pixels, cropped; stained tissue is coloured and is
whited out), so an image without a label costs no OCR at all. The ink is read as posted and turned a
quarter turn, since slide labels are often photographed sideways; page segmentation mode 11
("sparse text") finds scattered words.

When the binary is missing or OCR fails, `read_text` raises `OcrUnavailable`; the ingest pipeline
decides what that means (hold the post for a moderator, or go on without image text).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)


MIN_INK_PIXELS = 40  # fewer dark grey pixels than this cannot spell an identifier
MAX_INK_SHARE = 1 / 3  # writing leaves most of its box blank
PAPER_LEVEL = 190  # grey level from which an unsaturated pixel is paper (or glass)


class OcrUnavailable(RuntimeError):
    """The OCR engine could not be run (binary missing, timed out, or failed)."""


@dataclass(frozen=True)
class OcrSettings:
    """How hard to try: a bounded amount of work per image."""

    binary: str = "tesseract"
    timeout_s: float = 5.0
    max_side: int = 1400
    max_saturation: int = 60
    max_ink_level: int = 120
    rotations: Sequence[int] = field(default=(0, 270))
    language: str = "eng"


def tesseract_path(binary: str = "tesseract") -> str | None:
    """The binary's full path, or None when it is not installed."""
    return shutil.which(binary)


def prepare(
    image: Image.Image, max_side: int, max_saturation: int = 60, max_ink_level: int = 120
) -> Image.Image | None:
    """The image's ink, black on white, cropped to where the ink is and at most `max_side` pixels on
    its longer side (never enlarged); None when there is nothing that looks like writing.

    Labels, forms and report screenshots are dark, grey-scale ink on pale paper; stained tissue is
    coloured (eosin pink, haematoxylin purple, DAB brown) and glass is white. Ink here is a pixel
    that is dark (grey level at most `max_ink_level`), unsaturated (channels within
    `max_saturation` of each other) and close to paper (a solid patch of pale, unsaturated pixels).
    Everything else is whited out, because Tesseract reads tissue as thousands of letter-like blobs:
    slow, and noise for the screen. An image with no such ink (most micrographs) is not sent to
    Tesseract at all; neither is one whose "ink" covers more than a third of its crop (a dark
    grey-scale picture, such as an electron micrograph, is not a label).
    """
    rgb = image.convert("RGB")
    if max(rgb.size) > max_side:
        rgb = rgb.copy()
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    pixels = np.asarray(rgb, dtype=np.int16)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    grey = np.asarray(ImageOps.grayscale(rgb))
    unsaturated = saturation <= max_saturation
    paper = (grey >= PAPER_LEVEL) & unsaturated
    solid_paper = _box_count(paper, 5) == 25  # erosion: the centres of 5x5 all-paper patches
    ink = (grey <= max_ink_level) & unsaturated & (_box_count(solid_paper, 17) > 0)  # within 8 px
    if int(ink.sum()) < MIN_INK_PIXELS:
        return None
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    margin = 16
    top, bottom = max(0, rows[0] - margin), min(ink.shape[0], rows[-1] + margin + 1)
    left, right = max(0, cols[0] - margin), min(ink.shape[1], cols[-1] + margin + 1)
    crop = ink[top:bottom, left:right]
    if crop.mean() > MAX_INK_SHARE:
        return None
    page = np.where(crop, grey[top:bottom, left:right], 255).astype(np.uint8)
    return Image.fromarray(page)


def _box_count(mask: np.ndarray, size: int) -> np.ndarray:
    """For each pixel, how many pixels of `mask` lie in the `size` x `size` box centred on it
    (summed-area table: linear time whatever the box)."""
    pad = size // 2
    table = np.pad(mask.astype(np.int32), ((pad + 1, pad), (pad + 1, pad))).cumsum(0).cumsum(1)
    return table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]


def read_text(image: Image.Image, settings: OcrSettings | None = None) -> str:
    """All text Tesseract finds in `image`. Raises `OcrUnavailable` if the engine cannot be run or
    runs past `settings.timeout_s`.

    The ink (see `prepare`) is read at each rotation in `settings.rotations` in one Tesseract run:
    the turned copies are stacked on one page, so the engine's start-up (most of its time on a small
    label) is paid once.
    """
    settings = settings or OcrSettings()
    binary = tesseract_path(settings.binary)
    if binary is None:
        raise OcrUnavailable(f"the OCR engine ({settings.binary}) is not installed")
    prepared = prepare(image, settings.max_side, settings.max_saturation, settings.max_ink_level)
    if prepared is None:
        return ""
    page = _stack([prepared.rotate(r, expand=True) if r else prepared for r in settings.rotations])
    buffer = io.BytesIO()
    page.save(buffer, format="PNG", compress_level=1)
    return _run(binary, buffer.getvalue(), settings.language, settings.timeout_s)


def _stack(images: Sequence[Image.Image], gap: int = 24) -> Image.Image:
    """`images` one under the other on a white page, `gap` pixels apart."""
    width = max(image.width for image in images)
    height = sum(image.height for image in images) + gap * (len(images) - 1)
    page = Image.new("L", (width, height), 255)
    top = 0
    for image in images:
        page.paste(image, (0, top))
        top += image.height + gap
    return page


def _run(binary: str, png: bytes, language: str, timeout_s: float) -> str:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            [binary, "stdin", "stdout", "-l", language, "--psm", "11", "-c", "tessedit_do_invert=0"],
            input=png,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise OcrUnavailable(f"OCR took longer than {timeout_s:.1f} s") from err
    except OSError as err:
        raise OcrUnavailable(f"the OCR engine could not start ({err.strerror})") from err
    if done.returncode != 0:
        raise OcrUnavailable(f"the OCR engine failed (exit status {done.returncode})")
    return done.stdout.decode("utf-8", errors="replace")
