"""Pixels only: what the corpus keeps of an upload, with every embedded trace of its origin removed.

Phone photos carry GPS coordinates and timestamps in EXIF; editors add XMP (with file paths and
user names), ICC profiles name devices, PNG text chunks and JPEG comments carry whatever a scanner
or a person typed. Deleting known keys misses the ones nobody thought of, so instead the pixels
are copied into a brand-new image, which has no metadata to forget, and re-encoded from there.
Re-encoding is lossless PNG, so cleaning never degrades what the model sees.

Burned-in text (labels, accession numbers written on the slide) is in the pixels and is not
touched here: `ingest.ocr` reads it and `ingest.phi` screens it before this stage, and a post whose
image text looks like an identifier is held.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image

from model.images import DecodedImage, to_rgb


@dataclass(frozen=True)
class CleanImage:
    """An upload reduced to its pixels."""

    image: Image.Image
    """RGB, with an empty `info` dictionary and no EXIF."""
    png_bytes: bytes
    """`image` as a PNG with no ancillary chunks beyond what Pillow needs to describe the pixels."""
    sha256: str
    """Hex digest of `png_bytes`: a stable name for the stored file (identical pixels, identical name)."""

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def strip_metadata(image: Image.Image) -> Image.Image:
    """A new RGB image holding only `image`'s pixels (no EXIF, XMP, ICC, text chunks or comments).

    `to_rgb` runs first, so orientation and transparency are resolved before the EXIF that
    describes them is dropped.
    """
    rgb = to_rgb(image)
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def clean_image(decoded: DecodedImage | Image.Image) -> CleanImage:
    """Strip all metadata by copying pixels into a fresh image, and encode that as lossless PNG.

    Either input goes through `to_rgb` (a cheap copy for a `DecodedImage`, which is already upright
    RGB), so a bare Pillow image with an EXIF orientation is stored upright, not sideways.
    """
    fresh = strip_metadata(decoded.image if isinstance(decoded, DecodedImage) else decoded)
    buffer = io.BytesIO()
    fresh.save(buffer, format="PNG", compress_level=6)
    png_bytes = buffer.getvalue()
    return CleanImage(image=fresh, png_bytes=png_bytes, sha256=hashlib.sha256(png_bytes).hexdigest())


def make_thumbnail(image: Image.Image, max_side: int = 256, quality: int = 85) -> bytes:
    """A JPEG no larger than `max_side` on either side, aspect kept, metadata-free (for embeds and galleries).

    Images already smaller are not enlarged. JPEG because photographic thumbnails are several times
    smaller than PNG at no visible cost, and every chat client shows them inline.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    thumbnail = strip_metadata(image)
    thumbnail.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
