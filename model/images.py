"""Turning untrusted bytes into one upright, 8-bit RGB picture, or a sentence saying why not.

Everything that reaches the encoder, the corpus or a thumbnail passes through here, so the rules live
in one place: the real format comes from magic bytes (never a file name), size and pixel caps are
checked before any pixel is decoded (a 40 KB PNG can expand to gigabytes), truncated files fail
instead of being half-filled with grey, and every Pillow mode ends up as the RGB a browser would show:
orientation applied, transparency over white (the colour of a glass slide's background), 16-bit and
float images scaled rather than clipped.

Limits are passed per call (`ImageLimits`); nothing here touches Pillow's module-level settings such as
`Image.MAX_IMAGE_PIXELS` or `ImageFile.LOAD_TRUNCATED_IMAGES`.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from plipbot.errors import InputFileError, InvalidImageError

#: Formats we decode. Names are Pillow's format identifiers, so they can be passed to `Image.open`.
IMAGE_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"})

# How a recognised non-image is named in the error ("it looks like ...").
_NON_IMAGE_NAMES: dict[str, str] = {
    "PDF": "a PDF",
    "ZIP": "a ZIP archive or an Office document",
    "GZIP": "a gzip archive",
    "HTML": "a web page (HTML)",
    "SVG": "an SVG drawing",
    "TEXT": "text",
    "MP4": "an MP4 video",
    "MOV": "a QuickTime video",
    "WEBM": "a WebM or MKV video",
    "AVI": "an AVI video",
    "DICOM": "a DICOM file",
}
# Images in formats we deliberately do not decode: say so, and say what to send instead.
_UNSUPPORTED_IMAGE_NAMES: dict[str, str] = {
    "HEIC": "a HEIC photo",
    "AVIF": "an AVIF image",
}

# Everything Pillow's decoders are known to raise on malformed input. Catching these (and only these)
# turns a bad upload into a reply without hiding genuine bugs elsewhere.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
)

_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every untrusted image; defaults match `IngestSettings`.

    Pillow refuses images above twice its own `MAX_IMAGE_PIXELS` (about 179 megapixels) regardless,
    so `max_pixels` above that has no effect.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_aspect: float = 20.0


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload: pixels plus the facts about the file that callers report or store."""

    image: Image.Image
    """Upright 8-bit RGB, fully loaded (the file can be discarded)."""
    format: str
    """Sniffed format, one of `IMAGE_FORMATS`."""
    original_size: tuple[int, int]
    """(width, height) as stored in the file, before EXIF orientation (`image.size` is upright)."""
    frames: int
    """Frames or pages in the file; only the first is kept."""


def describe_bytes(n_bytes: int) -> str:
    """Human size for error sentences ('20 MB', '25.3 MB', '10 KB'), in binary units like the caps."""
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f}".removesuffix(".0") + " MB"
    if n_bytes >= 1024:
        return f"{n_bytes / 1024:.1f}".removesuffix(".0") + " KB"
    return f"{n_bytes} bytes"


def sniff_format(data: bytes) -> str | None:
    """The real type of `data` from its magic bytes; None when unrecognised.

    Returns a member of `IMAGE_FORMATS` for images we decode, or a name such as "PDF", "ZIP",
    "HTML", "TEXT", "MP4", "HEIC" for things people commonly send instead, so the error can say
    what the file looks like. File names and Content-Type headers lie; the first bytes rarely do.
    """
    head = data[:512]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    return _sniff_non_image(head)


def _sniff_non_image(head: bytes) -> str | None:
    """Name common non-images (and image formats we do not decode) for a helpful error."""
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "ZIP"
    if head.startswith(b"\x1f\x8b"):
        return "GZIP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "MOV" if brand == b"qt  " else "MP4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WEBM"
    if head[128:132] == b"DICM":
        return "DICOM"
    return _sniff_text(head)


def _sniff_text(head: bytes) -> str | None:
    """HTML, SVG or plain text: bytes with no binary control characters."""
    if not head:
        return None
    control = set(range(0x00, 0x20)) - {0x09, 0x0A, 0x0C, 0x0D, 0x1B}
    if any(byte in control for byte in head):
        return None
    lowered = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML"
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in lowered):
        return "SVG"
    return "TEXT"


def _not_an_image(kind: str | None) -> InvalidImageError:
    if kind in _UNSUPPORTED_IMAGE_NAMES:
        return InvalidImageError(
            f"That file is {_UNSUPPORTED_IMAGE_NAMES[kind]}, which plipbot cannot read; "
            "please send it as PNG or JPEG."
        )
    if kind in _NON_IMAGE_NAMES:
        return InvalidImageError(f"That file is not an image (it looks like {_NON_IMAGE_NAMES[kind]}).")
    return InvalidImageError(
        "That file is not an image plipbot can read (PNG, JPEG, GIF, WebP, TIFF or BMP)."
    )


def _too_many_pixels(size: tuple[int, int], limits: ImageLimits) -> InvalidImageError:
    width, height = size
    limit_mp = f"{limits.max_pixels / 1_000_000:g}"
    return InvalidImageError(f"That image is {width}x{height} pixels; the limit is {limit_mp} megapixels.")


def check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    """Refuse empty, oversized (bomb) and absurdly elongated images, from the header size alone."""
    width, height = size
    if width < 1 or height < 1:
        raise InvalidImageError("That image has no pixels.")
    if width * height > limits.max_pixels:
        raise _too_many_pixels(size, limits)
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise InvalidImageError(
            f"That image is {width}x{height} pixels; images more than {limits.max_aspect:g} times "
            "longer than they are wide are not accepted."
        )


def _size_from_header(data: bytes, image_format: str) -> tuple[int, int] | None:
    """Width and height without Pillow's global bomb check, only to word the error for huge images."""
    try:
        factory, _accept = Image.OPEN[image_format]
        return factory(io.BytesIO(data), "").size
    except (*_DECODE_ERRORS, Image.DecompressionBombError):
        return None


def _open_lazily(data: bytes, image_format: str, limits: ImageLimits) -> Image.Image:
    """Parse the header only; pixels are decoded later, after the size checks.

    The warnings filter is changed only inside `catch_warnings`, which restores it on exit (like
    every use of that context manager it is process-wide while active, not per thread).
    """
    try:
        with warnings.catch_warnings():
            # Our own, per-call limit is checked right after; Pillow's global warning threshold
            # would only duplicate it (or contradict a larger configured limit).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[image_format])
    except Image.DecompressionBombError as err:
        size = _size_from_header(data, image_format)
        if size is not None:
            raise _too_many_pixels(size, limits) from err
        raise InvalidImageError(
            f"That image has far too many pixels; the limit is {limits.max_pixels / 1_000_000:g} megapixels."
        ) from err
    except _DECODE_ERRORS as err:  # includes UnidentifiedImageError, an OSError
        raise InvalidImageError("That image is truncated or corrupt.") from err


def decode_image(data: bytes, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode untrusted bytes into upright RGB, enforcing `limits` before any pixel is decoded.

    Raises `InvalidImageError` for empty, oversized, non-image, corrupt or truncated input, for
    decompression bombs and for absurd aspect ratios. Animated or multi-page files yield the first
    frame (`frames` says how many there were).
    """
    limits = limits or ImageLimits()
    if not data:
        raise InvalidImageError("That file is empty.")
    if len(data) > limits.max_bytes:
        raise InvalidImageError(
            f"That file is {describe_bytes(len(data))}; the limit is {describe_bytes(limits.max_bytes)}."
        )
    image_format = sniff_format(data)
    if image_format is None or image_format not in IMAGE_FORMATS:
        raise _not_an_image(image_format)

    im = _open_lazily(data, image_format, limits)
    try:
        original_size = im.size
        check_dimensions(original_size, limits)
        frames = int(getattr(im, "n_frames", 1))
        if frames > 1:
            im.seek(0)
            check_dimensions(im.size, limits)
        im.load()
        rgb = to_rgb(im)
    except InvalidImageError:
        raise
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as err:
        raise InvalidImageError("That image is truncated or corrupt.") from err
    finally:
        im.close()
    return DecodedImage(image=rgb, format=image_format, original_size=original_size, frames=frames)


def read_file_capped(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """Read a local file, refusing missing paths, non-regular files and anything over `max_bytes`.

    The cap is enforced on what is read, not only on `stat()`, so a file that grows (or lies about
    its size) cannot push us past it.
    """
    file_path = Path(path)
    if not file_path.exists():
        raise InputFileError(f"No such file: {file_path}.")
    if not file_path.is_file():
        raise InputFileError(f"{file_path} is not a regular file.")
    try:
        if file_path.stat().st_size > max_bytes:
            raise InvalidImageError(f"{file_path.name} is larger than {describe_bytes(max_bytes)}.")
        with file_path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise InputFileError(f"Cannot read {file_path}: {err.strerror or err}.") from err
    if len(data) > max_bytes:
        raise InvalidImageError(f"{file_path.name} is larger than {describe_bytes(max_bytes)}.")
    return data


def load_image(
    source: str | os.PathLike[str] | bytes | Image.Image, limits: ImageLimits | None = None
) -> Image.Image:
    """Upright RGB from a path, raw bytes or an already-open Pillow image, under the same limits.

    A missing or unreadable path raises `InputFileError`; bad image content raises
    `InvalidImageError`.
    """
    limits = limits or ImageLimits()
    if isinstance(source, Image.Image):
        check_dimensions(source.size, limits)
        try:
            source.load()
            return to_rgb(source)
        except (*_DECODE_ERRORS, Image.DecompressionBombError) as err:
            raise InvalidImageError("That image is truncated or corrupt.") from err
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_image(bytes(source), limits).image
    return decode_image(read_file_capped(source, limits.max_bytes), limits).image


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB as a viewer would display `im`, for every Pillow mode; always a new image.

    - EXIF orientation is applied first (phone photos are stored sideways).
    - Transparency (alpha bands, palette or tRNS transparency) is composited over white, the
      background of a slide, rather than dropped (which reveals whatever colour hid underneath).
    - CMYK goes through its embedded ICC profile when there is one.
    - 16-bit images map 0..65535 onto 0..255; float images are scaled from their range.
    """
    upright = _apply_orientation(im)
    mode = upright.mode
    if mode == "RGB" and not upright.has_transparency_data:
        return upright
    if upright.has_transparency_data:
        # Pillow converts premultiplied "La" only to "LA"; every other mode goes straight to RGBA.
        rgba = (upright.convert("LA") if mode == "La" else upright).convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        out = Image.alpha_composite(background, rgba).convert("RGB")
    elif mode == "CMYK":
        out = _cmyk_to_rgb(upright)
    elif mode.startswith("I;16") or mode == "I":
        out = _scale_to_rgb(_sixteen_bit_to_uint8(np.asarray(upright)))
    elif mode == "F":
        out = _scale_to_rgb(_float_to_uint8(np.asarray(upright)))
    else:
        try:
            out = upright.convert("RGB")
        except ValueError as err:
            raise InvalidImageError(
                f"That image uses the {mode} colour mode, which is not supported."
            ) from err
    out.info.pop("transparency", None)
    if mode == "CMYK":
        out.info.pop("icc_profile", None)  # it describes the CMYK pixels, not these
    return out


def _apply_orientation(im: Image.Image) -> Image.Image:
    """EXIF orientation applied; unreadable EXIF means 'as stored', since the pixels themselves are fine."""
    try:
        return ImageOps.exif_transpose(im)
    except (SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return im.copy()


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """Use the file's ICC profile when present: Pillow's naive formula over-saturates print CMYK."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                im,
                source,
                ImageCms.createProfile("sRGB"),
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
                outputMode="RGB",
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            converted = None  # a broken or mismatched profile: fall back rather than refuse
        if converted is not None:
            return converted
    return im.convert("RGB")


def _sixteen_bit_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with rounding (x / 257); 32-bit data outside that range is stretched."""
    values = pixels.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        return _stretch_to_uint8(values.astype(np.float64))
    return ((values + 128) // 257).astype(np.uint8)


def _float_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] are intensities; anything else is stretched from its own min..max."""
    values = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    return _stretch_to_uint8(values)


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if high <= low:
        return np.full(values.shape, int(np.clip(low, 0, 255)), dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _scale_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray)).convert("RGB")
