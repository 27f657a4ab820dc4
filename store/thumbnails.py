"""`ThumbnailStore`: a small JPEG per case, because Discord attachment links expire.

A similar-case answer must still show the image months later, so each case keeps a re-encoded
thumbnail (longest side 256 px) in a folder: `data_dir / "thumbnails"` embedded, a mounted volume in
production. Files are sharded into subfolders by the first two hex digits of the id (256 folders), so
no folder grows to hundreds of thousands of entries. Writes are atomic (temporary file, then
`os.replace`), so a crash or a concurrent reader never sees half a JPEG.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from plipbot.errors import StoreError

log = logging.getLogger(__name__)

THUMBNAIL_MAX_SIDE = 256
"""Longest side of a stored thumbnail, in pixels: enough for a Discord embed, a few KB on disk."""

THUMBNAIL_QUALITY = 85
_SUFFIX = ".jpg"
_TEMP_PREFIX = ".tmp-"
_RESIZABLE_MODES = frozenset({"RGB", "L", "RGBA", "LA", "I", "F"})


def _canonical_id(point_id: str) -> str:
    """Ids are UUIDs; requiring one also keeps any other string from naming a path outside the root."""
    try:
        return str(uuid.UUID(str(point_id)))
    except ValueError as err:
        raise ValueError(f"{point_id!r} is not a case id (a UUID string)") from err


def _stretch_to_8_bits(image: Image.Image) -> Image.Image:
    """16-bit and float scans as 8-bit grey: a plain `convert` would clip most of them to white."""
    pixels = np.asarray(image, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
    return Image.fromarray(scaled.round().astype(np.uint8))


def _on_white(image: Image.Image) -> Image.Image:
    """Transparent pixels composited on white, as a viewer shows them (JPEG has no alpha)."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def encode_thumbnail(image: Image.Image, max_side: int = THUMBNAIL_MAX_SIDE) -> bytes:
    """`image` shrunk to fit `max_side` (never enlarged) and encoded as an RGB or grey JPEG.

    Resizes before any mode conversion where the mode allows it, so a 64-megapixel upload is never
    copied at full size.
    """
    if image.mode.startswith("I;"):
        image = image.convert("I")
    elif image.mode not in _RESIZABLE_MODES:
        image = _on_white(image) if image.mode == "P" or "A" in image.getbands() else image.convert("RGB")
    width, height = image.size
    scale = max_side / max(width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if image.mode in ("I", "F"):
        image = _stretch_to_8_bits(image)
    elif "A" in image.getbands():
        image = _on_white(image)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


class ThumbnailStore:
    """Thumbnails keyed by case id under `root / <first two hex digits> / <id>.jpg`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ThumbnailStore(root={str(self.root)!r})"

    def path(self, point_id: str) -> Path:
        """Where the thumbnail of `point_id` lives (whether or not it exists)."""
        canonical = _canonical_id(point_id)
        return self.root / canonical[:2] / f"{canonical}{_SUFFIX}"

    def put(self, point_id: str, image: Image.Image) -> Path:
        """Store (or replace) the thumbnail of `point_id`; returns its path."""
        target = self.path(point_id)
        data = encode_thumbnail(image)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_SUFFIX, dir=target.parent)
            temp_path = Path(temp_name)
            try:
                with os.fdopen(descriptor, "wb") as temp_file:
                    temp_file.write(data)
                    temp_file.flush()
                    os.fsync(temp_file.fileno())
                temp_path.replace(target)
            except BaseException:
                temp_path.unlink(missing_ok=True)
                raise
        except OSError as err:
            log.warning("cannot write thumbnail %s: %s", target, err)
            raise StoreError("The thumbnail folder cannot be written to.") from err
        return target

    def get_bytes(self, point_id: str) -> bytes | None:
        """The JPEG bytes, or None when there is no thumbnail (never stored, or withdrawn)."""
        try:
            return self.path(point_id).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            log.warning("cannot read thumbnail of %s: %s", point_id, err)
            raise StoreError("The thumbnail folder cannot be read.") from err

    def exists(self, point_id: str) -> bool:
        """Whether a thumbnail is stored for `point_id`."""
        return self.path(point_id).is_file()

    def delete(self, ids: Iterable[str]) -> None:
        """Remove these thumbnails; missing ones are fine (withdrawal may run twice)."""
        for point_id in ids:
            target = self.path(point_id)
            try:
                target.unlink(missing_ok=True)
            except OSError as err:
                log.warning("cannot delete thumbnail %s: %s", target, err)
                raise StoreError("The thumbnail folder cannot be written to.") from err

    def ids(self) -> Iterator[str]:
        """Ids of every stored thumbnail, for the sweep that removes thumbnails without a case."""
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for entry in sorted(shard.iterdir()):
                if entry.name.startswith(_TEMP_PREFIX) or entry.suffix != _SUFFIX:
                    continue
                with contextlib.suppress(ValueError):
                    yield _canonical_id(entry.stem)
