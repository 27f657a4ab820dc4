"""ingest.clean: after cleaning, nothing but pixels survives (checked on the re-opened bytes)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin

from ingest.clean import CleanImage, clean_image, make_thumbnail, strip_metadata
from model.images import decode_image
from tests.imagegen import encode, gradient, ihc, texture

SECRETS = [b"Exif", b"GPS", b"2019:03:04", b"xmpmeta", b"J Smith", b"MRN", b"Nikon", b"sRGB"]


def _icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.DateTime] = "2019:03:04 10:11:12"
    exif[ExifTags.Base.Make] = "Nikon"
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
    }
    return exif


def _loaded_jpeg(orientation: int = 1) -> bytes:
    """A phone-like JPEG: GPS, timestamp, camera make, XMP, a comment and an ICC profile."""
    return encode(
        texture((96, 64)),
        "JPEG",
        quality=95,
        exif=_exif(orientation),
        comment=b"patient J Smith MRN 1234567",
        xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>J Smith</x:xmpmeta>",
        icc_profile=_icc(),
    )


def _loaded_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "patient J Smith")
    info.add_text("Description", "MRN 1234567", zip=True)  # zTXt
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>J Smith</x:xmpmeta>")
    return encode(gradient((40, 30)), "PNG", pnginfo=info, exif=_exif(), icc_profile=_icc())


def _png_chunk_types(data: bytes) -> list[bytes]:
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def _assert_no_metadata(data: bytes) -> None:
    reopened = Image.open(io.BytesIO(data))
    assert not dict(reopened.getexif())
    for key in (
        "exif",
        "icc_profile",
        "xmp",
        "XML:com.adobe.xmp",
        "comment",
        "Comment",
        "Description",
        "dpi",
    ):
        assert key not in reopened.info
    for secret in SECRETS:
        assert secret not in data


def test_sources_really_carry_metadata() -> None:
    """Guard on the test: the inputs below do hold what cleaning must remove."""
    jpeg = Image.open(io.BytesIO(_loaded_jpeg()))
    assert jpeg.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert {"exif", "xmp", "comment", "icc_profile"} <= set(jpeg.info)
    png = Image.open(io.BytesIO(_loaded_png()))
    png.load()
    assert {"Comment", "Description", "XML:com.adobe.xmp", "icc_profile", "exif"} <= set(png.info)


def test_clean_jpeg_keeps_pixels_and_nothing_else() -> None:
    decoded = decode_image(_loaded_jpeg())
    cleaned = clean_image(decoded)
    assert isinstance(cleaned, CleanImage)
    assert cleaned.png_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    assert _png_chunk_types(cleaned.png_bytes) == [b"IHDR", b"IDAT", b"IEND"]
    _assert_no_metadata(cleaned.png_bytes)
    assert cleaned.image.info == {}
    reopened = Image.open(io.BytesIO(cleaned.png_bytes))
    assert reopened.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(reopened), np.asarray(decoded.image))


def test_clean_png_with_text_chunks_keeps_pixels_exactly() -> None:
    cleaned = clean_image(decode_image(_loaded_png()))
    assert _png_chunk_types(cleaned.png_bytes) == [b"IHDR", b"IDAT", b"IEND"]
    _assert_no_metadata(cleaned.png_bytes)
    reopened = Image.open(io.BytesIO(cleaned.png_bytes))
    assert reopened.text == {}  # type: ignore[attr-defined]
    np.testing.assert_array_equal(np.asarray(reopened), np.asarray(gradient((40, 30))))


def test_clean_accepts_a_bare_pil_image_and_applies_orientation() -> None:
    opened = Image.open(io.BytesIO(_loaded_jpeg(orientation=6)))
    cleaned = clean_image(opened)
    assert cleaned.size == (64, 96)  # upright, not stored sideways with its orientation tag removed
    _assert_no_metadata(cleaned.png_bytes)


def test_clean_converts_other_modes_to_rgb() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    cleaned = clean_image(rgba)
    assert cleaned.image.mode == "RGB"
    assert cleaned.image.getpixel((0, 0)) == (255, 255, 255)


def test_same_pixels_same_digest() -> None:
    first = clean_image(decode_image(_loaded_png()))
    second = clean_image(gradient((40, 30)))
    assert first.sha256 == second.sha256
    assert len(first.sha256) == 64
    assert clean_image(texture((40, 30))).sha256 != first.sha256


def test_strip_metadata_returns_a_fresh_image() -> None:
    opened = Image.open(io.BytesIO(_loaded_jpeg()))
    fresh = strip_metadata(opened)
    assert fresh.info == {}
    assert not dict(fresh.getexif())


def test_thumbnail_is_small_jpeg_without_metadata() -> None:
    data = make_thumbnail(ihc().resize((512, 256)))
    thumbnail = Image.open(io.BytesIO(data))
    assert thumbnail.format == "JPEG"
    assert thumbnail.size == (256, 128)
    _assert_no_metadata(data)


def test_thumbnail_of_a_tagged_photo_is_clean_and_upright() -> None:
    data = make_thumbnail(Image.open(io.BytesIO(_loaded_jpeg(orientation=6))), max_side=48)
    thumbnail = Image.open(io.BytesIO(data))
    assert thumbnail.size == (32, 48)
    _assert_no_metadata(data)


def test_thumbnail_never_enlarges_and_checks_its_argument() -> None:
    assert Image.open(io.BytesIO(make_thumbnail(gradient((40, 30))))).size == (40, 30)
    with pytest.raises(ValueError, match="max_side"):
        make_thumbnail(gradient(), max_side=0)
