"""Turning untrusted bytes into one upright, 8-bit RGB picture, or a sentence saying why not.

Everything that reaches the encoder, the corpus or a thumbnail passes through here, so the rules live
in one place: the real format comes from magic bytes (never a file name), size and pixel caps are
checked before any pixel is decoded (a 40 KB PNG can expand to gigabytes), truncated files fail
instead of being half-filled with grey, and every Pillow mode ends up as the RGB a browser would show:
orientation applied, transparency over white (the colour of a glass slide's background), 16-bit and
float images scaled rather than clipped.

Memory is bounded per decode (about 300 MiB at the default limits, measured by
bench/decode_bench.py): the decoder's own need is estimated from the header and refused above a
budget, large pictures are decoded at reduced scale, and mode conversion runs in strips of rows, so
no whole-image float64 copy ever exists. A per-process semaphore bounds how many decodes run at once.

Limits are passed per call (`ImageLimits`); nothing here touches Pillow's module-level settings such as
`Image.MAX_IMAGE_PIXELS` or `ImageFile.LOAD_TRUNCATED_IMAGES`.
"""

from __future__ import annotations

import io
import math
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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

    Memory is bounded by three of them together: `max_decode_bytes` caps what the decoder itself
    must hold (estimated from the header, before any pixel is decoded), `max_output_pixels` caps the
    RGB result (larger pictures are decoded at reduced scale), and `max_concurrent_decodes` caps how
    many decodes a process runs at once.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_aspect: float = 20.0
    max_output_pixels: int = 12_000_000
    """Pictures above this are box-reduced (JPEG: decoded at 1/2, 1/4 or 1/8 scale) by the smallest
    integer factor that fits. Nothing downstream needs more: the encoder sees 224 px, thumbnails are
    256 px, and a 12-megapixel phone photo passes unchanged."""
    max_decode_bytes: int = 256 * 1024 * 1024
    """Estimated decoder memory (pixels x bytes per pixel x the decoder's own copies) above which a
    file is refused: a 64-megapixel 8-bit PNG or JPEG fits, a 64-megapixel float TIFF does not."""
    max_concurrent_decodes: int = 2
    """Decodes running at once in this process; further callers wait for a slot."""


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


_BYTES_PER_PIXEL: dict[str, int] = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
"""Pillow's storage per pixel; every mode not listed takes 4 bytes (RGB is stored as RGBX)."""

_DECODER_COPIES: dict[str, int] = {"WEBP": 4, "TIFF": 2}
"""Whole-image buffers a decoder needs, counting Pillow's own: libwebp's canvas and the copies handed to
Pillow; libtiff's strip buffer (a one-strip TIFF is the whole image). Measured by bench/decode_bench.py."""

_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


@contextmanager
def decode_slot(limits: ImageLimits) -> Iterator[None]:
    """Hold one of the process's `limits.max_concurrent_decodes` decode slots.

    One semaphore per configured size, created on first use and shared by every thread of the
    process (bot threads, worker pool threads, ingest): memory per decode is bounded, so bounding
    how many run at once bounds the process.
    """
    count = max(1, limits.max_concurrent_decodes)
    with _slots_lock:
        slots = _slots.setdefault(count, threading.BoundedSemaphore(count))
    with slots:
        yield


def reduction_factor(size: tuple[int, int], max_output_pixels: int) -> int:
    """The smallest integer box factor that brings `size` within `max_output_pixels` (1: none)."""
    width, height = size
    factor = 1
    while -(-width // factor) * -(-height // factor) > max(1, max_output_pixels):
        factor += 1
    return factor


def _check_decode_memory(im: Image.Image, image_format: str, limits: ImageLimits) -> None:
    """Refuse, from the header, a file whose decoding alone would take more than the memory budget."""
    width, height = im.size
    per_pixel = _BYTES_PER_PIXEL.get(im.mode, 4) * _DECODER_COPIES.get(image_format, 1)
    if width * height * per_pixel <= limits.max_decode_bytes:
        return
    limit_mp = math.floor(limits.max_decode_bytes / per_pixel / 100_000) / 10
    raise InvalidImageError(
        f"That image is {width}x{height} pixels; a {image_format} image of this colour depth can be at "
        f"most {limit_mp:g} megapixels. Please send a smaller image or a PNG or JPEG."
    )


def decode_image(data: bytes, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode untrusted bytes into upright RGB, enforcing `limits` before any pixel is decoded.

    Raises `InvalidImageError` for empty, oversized, non-image, corrupt or truncated input, for
    decompression bombs, for absurd aspect ratios and for files whose decoding would exceed the
    memory budget. Animated or multi-page files yield the first frame (`frames` says how many there
    were). Pictures above `limits.max_output_pixels` come back box-reduced.
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

    with decode_slot(limits):
        im = _open_lazily(data, image_format, limits)
        try:
            original_size = im.size
            check_dimensions(original_size, limits)
            frames = int(getattr(im, "n_frames", 1))
            if frames > 1:
                im.seek(0)
                check_dimensions(im.size, limits)
            factor = reduction_factor(im.size, limits.max_output_pixels)
            if image_format == "JPEG" and factor > 1:
                # libjpeg scales while decoding (1/2, 1/4, 1/8): the full picture is never in memory
                im.draft(im.mode, (-(-im.width // factor), -(-im.height // factor)))
                factor = reduction_factor(im.size, limits.max_output_pixels)
            _check_decode_memory(im, image_format, limits)
            im.load()
            rgb = _upright_rgb(im, factor=factor, owned=True)
        except InvalidImageError:
            im.close()
            raise
        except (*_DECODE_ERRORS, Image.DecompressionBombError) as err:
            im.close()
            raise InvalidImageError("That image is truncated or corrupt.") from err
        if rgb is not im:
            im.close()  # frees the source pixels now, not at the next garbage collection
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
            with decode_slot(limits):
                source.load()
                return to_rgb(source)
        except (*_DECODE_ERRORS, Image.DecompressionBombError) as err:
            raise InvalidImageError("That image is truncated or corrupt.") from err
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_image(bytes(source), limits).image
    return decode_image(read_file_capped(source, limits.max_bytes), limits).image


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB as a viewer would display `im`, for every Pillow mode; always a new image.

    - EXIF orientation is applied (phone photos are stored sideways).
    - Transparency (alpha bands, palette or tRNS transparency) is composited over white, the
      background of a slide, rather than dropped (which reveals whatever colour hid underneath).
    - CMYK goes through its embedded ICC profile when there is one.
    - 16-bit images map 0..65535 onto 0..255; float images are scaled from their range.

    Conversion runs in strips of rows, so its temporaries stay a few MiB whatever the image size:
    the result is the same as converting the whole image at once.
    """
    return _upright_rgb(im, factor=1, owned=False)


def _upright_rgb(im: Image.Image, *, factor: int, owned: bool) -> Image.Image:
    """`to_rgb`, box-reduced by `factor`; `owned` lets an already-RGB `im` be returned itself."""
    if im.mode == "RGB" and not im.has_transparency_data and factor == 1:
        if owned:
            out = im
            # new pixels only when it really rotates; unreadable EXIF shows the pixels as stored
            with suppress(SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
                ImageOps.exif_transpose(im, in_place=True)
        else:
            out = _apply_orientation(im)
        out.info.pop("transparency", None)
        return out
    out = _convert_in_strips(im, _strip_converter(im), factor)
    method = _ORIENTATIONS.get(_orientation(im))
    return out.transpose(method) if method is not None else out


_ORIENTATIONS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transpose that shows the picture upright (as `ImageOps.exif_transpose`)."""

_STRIP_PIXELS = 1 << 19
"""Pixels converted at a time: float64 temporaries of a strip stay near 4 MiB."""


def _orientation(im: Image.Image) -> int:
    """The EXIF (or XMP) orientation; unreadable metadata means 'as stored', the pixels are fine."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except (SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return 1


def _apply_orientation(im: Image.Image) -> Image.Image:
    """EXIF orientation applied; unreadable EXIF means 'as stored', since the pixels themselves are fine."""
    try:
        return ImageOps.exif_transpose(im)
    except (SyntaxError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return im.copy()


def _convert_in_strips(
    im: Image.Image, convert: Callable[[Image.Image], Image.Image], factor: int
) -> Image.Image:
    """Apply the per-pixel `convert` strip by strip into a fresh RGB image reduced by `factor`.

    Only the source and the (possibly reduced) result are ever whole; every conversion
    temporary is strip-sized. Strips are a multiple of `factor` rows high, so each block of the
    box reduction lies inside one strip.
    """
    width, height = im.size
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    rows = max(factor, (_STRIP_PIXELS // max(1, width)) // factor * factor)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        piece = convert(im.crop((0, top, width, bottom)))
        if factor > 1:
            piece = piece.reduce(factor)
        out.paste(piece, (0, top // factor))
    return out


def _strip_converter(im: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """The per-strip conversion to RGB for `im`'s mode; whole-image facts (range, profile) come first."""
    mode = im.mode
    if im.has_transparency_data:
        return _over_white
    if mode == "CMYK":
        return _cmyk_converter(im)
    if mode.startswith("I;16") or mode == "I":
        return _gray_converter(_sixteen_bit_to_uint8, _value_range(im, as_float=False))
    if mode == "F":
        return _gray_converter(_float_to_uint8, _value_range(im, as_float=True))
    return _plain_convert


def _plain_convert(strip: Image.Image) -> Image.Image:
    try:
        return strip.convert("RGB")
    except ValueError as err:
        raise InvalidImageError(
            f"That image uses the {strip.mode} colour mode, which is not supported."
        ) from err


def _over_white(strip: Image.Image) -> Image.Image:
    # Pillow converts premultiplied "La" only to "LA"; every other mode goes straight to RGBA.
    rgba = (strip.convert("LA") if strip.mode == "La" else strip).convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _cmyk_converter(im: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """Use the file's ICC profile when present: Pillow's naive formula over-saturates print CMYK."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            transform = ImageCms.buildTransform(
                ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                ImageCms.createProfile("sRGB"),
                "CMYK",
                "RGB",
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
            )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            transform = None  # a broken or mismatched profile: fall back rather than refuse
        if transform is not None:
            return lambda strip: _apply_profile(strip, transform)
    return _plain_convert


def _apply_profile(strip: Image.Image, transform: ImageCms.ImageCmsTransform) -> Image.Image:
    try:
        converted = ImageCms.applyTransform(strip, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        converted = None
    return converted if converted is not None else strip.convert("RGB")


def _strips(im: Image.Image) -> Iterator[Image.Image]:
    width, height = im.size
    rows = max(1, _STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        yield im.crop((0, top, width, min(height, top + rows)))


def _value_range(im: Image.Image, *, as_float: bool) -> tuple[float, float] | None:
    """(min, max) over the whole image, NaN and infinities counted as 0 for floats; None if empty."""
    low, high = math.inf, -math.inf
    for strip in _strips(im):
        values = np.asarray(strip)
        if values.size == 0:
            continue
        if as_float:
            values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return None if low > high else (low, high)


def _gray_converter(
    to_uint8: Callable[[np.ndarray, tuple[float, float] | None], np.ndarray],
    value_range: tuple[float, float] | None,
) -> Callable[[Image.Image], Image.Image]:
    def convert(strip: Image.Image) -> Image.Image:
        gray = to_uint8(np.asarray(strip), value_range)
        return Image.fromarray(np.ascontiguousarray(gray)).convert("RGB")

    return convert


def _sixteen_bit_to_uint8(pixels: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """0..65535 -> 0..255 with rounding (x / 257); 32-bit data outside that range is stretched."""
    if value_range is not None and (value_range[0] < 0 or value_range[1] > 65535):
        return _stretch_to_uint8(pixels.astype(np.float64), value_range)
    return ((pixels.astype(np.int64) + 128) // 257).astype(np.uint8)


def _float_to_uint8(pixels: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Floats in [0, 1] are intensities; anything else is stretched from the image's own min..max."""
    values = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if value_range is None or (value_range[0] >= 0.0 and value_range[1] <= 1.0):
        return np.rint(values * 255.0).astype(np.uint8)
    return _stretch_to_uint8(values, value_range)


def _stretch_to_uint8(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    low, high = value_range
    if high <= low:
        return np.full(values.shape, int(np.clip(low, 0, 255)), dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)
