"""Generated photographs of slides with burned-in labels, for measuring the OCR path of the PHI screen.

Each image is an H&E-like field (pink stroma, purple nuclei, bare glass) with a paper label pasted
on it, the way a glass slide looks when photographed whole or a requisition is photographed beside
it. Labels with identifiers carry a name, a record number, an accession number or a date of birth in
the formats labs print; clean labels carry what teaching slides show (stain, block, magnification).
Fonts are the DejaVu and STIX faces that ship with matplotlib (a dependency), at several sizes and
rotations, including a quarter turn (labels photographed sideways).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEED = 7
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf"
)
SIZES = (18, 24, 32)
ROTATIONS = (0, -4, 6, 90)

_FIRST = ("JOHN", "MARY", "DAVID", "SUSAN", "PRIYA", "AHMED", "MARIA", "WEI", "SIOBHAN", "CARLOS")
_LAST = ("SMITH", "JOHNSON", "GARCIA", "PATEL", "NGUYEN", "OKAFOR", "KOWALSKI", "MURPHY", "CHEN", "MILLER")
_CLEAN_LINES = (
    ("H&E", "A1"), ("CD20", "B2 L3"), ("PAS-D", "x400"), ("Ki-67", "block C4"), ("GMS", "level 2"),
    ("TEACHING SET", "colon 12"), ("Congo red", "polarised"), ("ER / PR", "A3"), ("Trichrome", "liver"),
    ("HER2 IHC", "4B5"),
)


@dataclass(frozen=True)
class SlideLabel:
    """One generated image, what its label says, and how it was drawn."""

    image: Image.Image
    lines: tuple[str, ...]
    has_phi: bool
    font: str
    size: int
    rotation: int


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _identifier_lines(rng: random.Random) -> tuple[str, ...]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    mrn = "".join(str(rng.randint(0, 9)) for _ in range(8))
    accession = f"S{rng.randint(10, 25)}-{rng.randint(10000, 99999)}"
    dob = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1930, 2010)}"
    layouts = (
        (f"{last}, {first}", f"MRN {mrn}"),
        (f"{last}, {first}", f"DOB {dob}"),
        (f"MRN: {mrn}", accession + " A1"),
        (f"{first} {last}", accession),
        (f"DOB {dob}", "H&E"),
        (accession, f"{last}, {first[0]}."),
    )
    return rng.choice(layouts)


def he_field(size: tuple[int, int], seed: int) -> Image.Image:
    """An H&E-like photomicrograph: eosin-pink stroma of varying density, haematoxylin-purple
    nuclei (dark, crowded in places), and patches of bare white glass."""
    rng = np.random.default_rng(seed)
    width, height = size
    density = rng.random((height // 16 + 1, width // 16 + 1))
    density = np.kron(density, np.ones((16, 16)))[:height, :width]
    eosin = np.array([236, 150, 196]) * (1 - 0.35 * density[..., None]) + np.array([255, 250, 252]) * (
        0.35 * density[..., None]
    )
    glass = density > 0.85
    eosin[glass] = (246, 244, 247)
    image = Image.fromarray(np.clip(eosin, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(width * height // 900):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        rx, ry = int(rng.integers(3, 8)), int(rng.integers(3, 7))
        shade = int(rng.integers(0, 60))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=(70 + shade, 40 + shade // 2, 130 + shade))
    return image


def render(lines: tuple[str, ...], font: str, size: int, rotation: int, seed: int) -> Image.Image:
    """A 900x700 tissue photograph with a white label holding `lines`."""
    face = _font(font, size)
    pad = size // 2
    widths = [int(face.getlength(line)) for line in lines]
    label_size = (max(widths) + 2 * pad, len(lines) * int(size * 1.35) + 2 * pad)
    label = Image.new("RGB", label_size, (246, 244, 238))
    draw = ImageDraw.Draw(label)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * int(size * 1.35)), line, font=face, fill=(20, 20, 30))
    label = label.rotate(rotation, expand=True, fillcolor=(246, 244, 238), resample=Image.Resampling.BICUBIC)
    background = he_field((900, 700), seed=seed)
    rng = random.Random(seed)
    x = rng.randint(10, max(10, background.width - label.width - 10))
    y = rng.randint(10, max(10, background.height - label.height - 10))
    background.paste(label, (x, y))
    return background


def slide_labels(n_identifier: int = 24, n_clean: int = 12, seed: int = SEED) -> list[SlideLabel]:
    """Images with identifiers first, then clean labels; fonts, sizes and rotations cycle through all."""
    rng = random.Random(seed)
    out: list[SlideLabel] = []
    for i in range(n_identifier + n_clean):
        has_phi = i < n_identifier
        lines = _identifier_lines(rng) if has_phi else rng.choice(_CLEAN_LINES)
        font = FONT_FILES[i % len(FONT_FILES)]
        size = SIZES[i % len(SIZES)]
        rotation = ROTATIONS[i % len(ROTATIONS)]
        image = render(lines, font, size, rotation, seed + i)
        out.append(SlideLabel(image, lines, has_phi, font, size, rotation))
    return out
