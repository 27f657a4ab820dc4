"""model.images: format sniffing, limits before decoding, and correct RGB for every Pillow mode."""

from __future__ import annotations

import io
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile

from model import images
from model.images import (
    IMAGE_FORMATS,
    DecodedImage,
    ImageLimits,
    decode_image,
    describe_bytes,
    load_image,
    sniff_format,
    to_rgb,
)
from plipbot.errors import InputFileError, InvalidImageError
from tests.hostile_files import cmyk_icc_profile, hostile_files, measure_decode, tiff_stream
from tests.imagegen import encode, gradient, noise, png_claiming_size, solid

# ---------------------------------------------------------------------------------------------
# sniff_format


@pytest.mark.parametrize("image_format", sorted(IMAGE_FORMATS))
def test_sniff_recognises_every_accepted_format(image_format: str) -> None:
    assert sniff_format(encode(solid(), image_format)) == image_format


def test_sniff_recognises_big_endian_tiff() -> None:
    assert sniff_format(b"MM\x00*" + bytes(64)) == "TIFF"


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("slide.png", b"hello")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF"),
        (_zip_bytes(), "ZIP"),
        (b"  <!DOCTYPE html><html><body>Not found</body></html>", "HTML"),
        (b"\xef\xbb\xbf<html lang='en'>", "HTML"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"just a caption, not a picture\n", "TEXT"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "MP4"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "GZIP"),
        (bytes(128) + b"DICM" + bytes(16), "DICOM"),
        (bytes(range(256)), None),
        (b"", None),
    ],
)
def test_sniff_names_common_non_images(data: bytes, expected: str | None) -> None:
    assert sniff_format(data) == expected


def test_format_comes_from_bytes_not_the_file_name(tmp_path: Path) -> None:
    """A PNG named .jpg is a PNG; a PDF named .png is refused as a PDF."""
    misnamed_png = tmp_path / "photo.jpg"
    misnamed_png.write_bytes(encode(solid((10, 20, 30)), "PNG"))
    assert load_image(misnamed_png).getpixel((0, 0)) == (10, 20, 30)
    assert decode_image(misnamed_png.read_bytes()).format == "PNG"

    pdf_as_png = tmp_path / "slide.png"
    pdf_as_png.write_bytes(b"%PDF-1.4\n" + bytes(100))
    with pytest.raises(InvalidImageError, match=r"^That file is not an image \(it looks like a PDF\)\.$"):
        load_image(pdf_as_png)


# ---------------------------------------------------------------------------------------------
# decode_image: accepted formats


@pytest.mark.parametrize("image_format", sorted(IMAGE_FORMATS))
def test_decode_every_format_gives_loaded_rgb(image_format: str) -> None:
    source = gradient((40, 30))
    decoded = decode_image(encode(source, image_format))
    assert isinstance(decoded, DecodedImage)
    assert decoded.format == image_format
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == decoded.original_size == (40, 30)
    assert decoded.frames == 1
    tolerance = 40 if image_format in {"JPEG", "WEBP"} else 0  # lossy formats
    difference = np.abs(np.asarray(decoded.image, dtype=int) - np.asarray(source, dtype=int))
    assert difference.max() <= tolerance
    assert decoded.image.getpixel((0, 0)) is not None  # pixels are loaded, the file is not needed


def test_decode_sixteen_bit_png_scales_instead_of_clipping() -> None:
    pixels = np.array([[0, 32768, 65535]], dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(pixels), "PNG"))
    assert [decoded.image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


# ---------------------------------------------------------------------------------------------
# decode_image: refusals


def test_empty_bytes_are_refused() -> None:
    with pytest.raises(InvalidImageError, match=r"^That file is empty\.$"):
        decode_image(b"")


def test_byte_cap_is_checked_before_anything_else() -> None:
    data = encode(noise((64, 64)), "PNG")
    with pytest.raises(InvalidImageError, match=r"^That file is 1[0-9]\.?[0-9]? KB; the limit is 10 KB\.$"):
        decode_image(data, ImageLimits(max_bytes=10 * 1024))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"%PDF-1.7\n" + bytes(100), r"^That file is not an image \(it looks like a PDF\)\.$"),
        (_zip_bytes(), r"\(it looks like a ZIP archive"),
        (b"<!doctype html><title>403</title>", r"\(it looks like a web page \(HTML\)\)\.$"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", r"\(it looks like an MP4 video\)\.$"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", r"HEIC photo.*PNG or JPEG\.$"),
        (bytes(range(256)), r"^That file is not an image plipbot can read"),
    ],
)
def test_non_images_are_named_in_the_error(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        decode_image(data)


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_files_are_refused(image_format: str) -> None:
    data = encode(noise((128, 128)), image_format)
    with pytest.raises(InvalidImageError, match=r"^That image is truncated or corrupt\.$"):
        decode_image(data[: len(data) // 2])


def test_corrupt_header_is_refused() -> None:
    data = bytearray(encode(noise((32, 32)), "PNG"))
    data[16:24] = b"\xff" * 8  # width/height inside IHDR: the CRC no longer matches
    with pytest.raises(InvalidImageError, match=r"^That image is truncated or corrupt\.$"):
        decode_image(bytes(data))


def test_pixel_cap_is_checked_from_the_header_before_decoding() -> None:
    """The pixel data is garbage: a size error (not 'corrupt') proves nothing was decoded."""
    with pytest.raises(
        InvalidImageError, match=r"^That image is 9000x8000 pixels; the limit is 64 megapixels\.$"
    ):
        decode_image(png_claiming_size(9000, 8000))


def test_decompression_bomb_beyond_pillows_own_limit_names_its_size() -> None:
    with pytest.raises(
        InvalidImageError, match=r"^That image is 30000x30000 pixels; the limit is 64 megapixels\.$"
    ):
        decode_image(png_claiming_size(30000, 30000))


def test_pixel_cap_is_per_call() -> None:
    data = encode(solid(size=(200, 100)), "PNG")
    with pytest.raises(InvalidImageError, match=r"200x100 pixels; the limit is 0\.01 megapixels"):
        decode_image(data, ImageLimits(max_pixels=10_000))
    assert decode_image(data, ImageLimits(max_pixels=20_000)).image.size == (200, 100)


def test_limits_leave_pillow_globals_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    for data in (png_claiming_size(30000, 30000), png_claiming_size(9000, 8000)):
        with pytest.raises(InvalidImageError):
            decode_image(data)
    decode_image(encode(solid(), "PNG"), ImageLimits(max_pixels=200_000_000))
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)) == before


@pytest.mark.parametrize(
    ("size", "accepted"),
    [((2000, 100), True), ((100, 2000), True), ((2100, 100), False), ((100, 2100), False)],
)
def test_absurd_aspect_ratios_are_refused(size: tuple[int, int], accepted: bool) -> None:
    data = encode(solid(size=size), "PNG")
    if accepted:
        assert decode_image(data).image.size == size
    else:
        with pytest.raises(InvalidImageError, match=r"more than 20 times longer than they are wide"):
            decode_image(data)


# ---------------------------------------------------------------------------------------------
# decode_image: animations and pages


def _frames() -> list[Image.Image]:
    return [solid((255, 0, 0)), solid((0, 255, 0)), solid((0, 0, 255))]


@pytest.mark.parametrize("image_format", ["GIF", "WEBP", "PNG"])
def test_animated_images_keep_the_first_frame(image_format: str) -> None:
    first, *rest = _frames()
    params: dict[str, object] = {"save_all": True, "append_images": rest, "duration": 100, "loop": 0}
    if image_format == "WEBP":
        params["lossless"] = True
    decoded = decode_image(encode(first, image_format, **params))
    assert decoded.frames == 3
    assert decoded.image.getpixel((5, 5)) == (255, 0, 0)


def test_multi_page_tiff_keeps_the_first_page() -> None:
    first, *rest = _frames()
    decoded = decode_image(encode(first, "TIFF", save_all=True, append_images=rest))
    assert decoded.format == "TIFF"
    assert decoded.frames == 3
    assert decoded.image.getpixel((0, 0)) == (255, 0, 0)


# ---------------------------------------------------------------------------------------------
# load_image


def test_load_image_accepts_path_bytes_and_pil(tmp_path: Path) -> None:
    source = gradient()
    path = tmp_path / "g.png"
    path.write_bytes(encode(source, "PNG"))
    expected = np.asarray(source)
    for loaded in (
        load_image(path),
        load_image(str(path)),
        load_image(path.read_bytes()),
        load_image(source),
    ):
        assert loaded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(loaded), expected)


def test_load_image_pil_input_is_converted_and_checked() -> None:
    assert load_image(solid((0, 0, 0), mode="L")).getpixel((0, 0)) == (0, 0, 0)
    with pytest.raises(InvalidImageError, match=r"the limit is 0\.001 megapixels"):
        load_image(solid(size=(100, 100)), ImageLimits(max_pixels=1000))


def test_load_image_missing_path_is_an_input_file_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"^No such file: .*nope\.png\.$"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputFileError, match="is not a regular file"):
        load_image(tmp_path)


def test_load_image_refuses_big_files_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(encode(noise((64, 64)), "PNG"))
    with pytest.raises(InvalidImageError, match=r"^big\.png is larger than 10 KB\.$"):
        load_image(path, ImageLimits(max_bytes=10 * 1024))


def test_describe_bytes() -> None:
    assert describe_bytes(20 * 1024 * 1024) == "20 MB"
    assert describe_bytes(int(25.3 * 1024 * 1024)) == "25.3 MB"
    assert describe_bytes(1536) == "1.5 KB"
    assert describe_bytes(12) == "12 bytes"


# ---------------------------------------------------------------------------------------------
# to_rgb, mode by mode


def _pixel(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    out = to_rgb(image)
    assert out.mode == "RGB"
    value = out.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def test_rgb_is_unchanged_but_copied() -> None:
    source = noise()
    out = to_rgb(source)
    assert out is not source
    np.testing.assert_array_equal(np.asarray(out), np.asarray(source))


def test_rgba_composites_over_white() -> None:
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red: the slide background
    image.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    image.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black
    out = to_rgb(image)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (255, 0, 0)
    assert all(126 <= channel <= 128 for channel in out.getpixel((2, 0)))  # type: ignore[union-attr]


def test_la_composites_over_white() -> None:
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (0, 0))
    image.putpixel((1, 0), (0, 255))
    assert _pixel(image, (0, 0)) == (255, 255, 255)
    assert _pixel(image, (1, 0)) == (0, 0, 0)


def test_palette_with_transparency_index_composites_over_white() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    assert _pixel(image, (0, 0)) == (255, 255, 255)
    assert _pixel(image, (1, 0)) == (0, 0, 255)
    # the same through a real GIF file
    decoded = decode_image(encode(image, "GIF", transparency=0))
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.image.getpixel((1, 0)) == (0, 0, 255)


def test_pa_composites_over_white() -> None:
    image = Image.new("PA", (1, 1))
    image.putpalette([0, 128, 0] + [0] * 765)
    image.putpixel((0, 0), (0, 0))
    assert _pixel(image) == (255, 255, 255)


def test_palette_without_transparency() -> None:
    image = Image.new("P", (1, 1))
    image.putpalette([10, 20, 30] + [0] * 765)
    assert _pixel(image) == (10, 20, 30)


def test_rgb_with_trns_colour_key_composites_over_white() -> None:
    image = solid((1, 2, 3), size=(4, 4))
    decoded = decode_image(encode(image, "PNG", transparency=(1, 2, 3)))
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)


def test_grayscale_and_bilevel() -> None:
    assert _pixel(Image.new("L", (1, 1), 77)) == (77, 77, 77)
    assert _pixel(Image.new("1", (1, 1), 1)) == (255, 255, 255)
    assert _pixel(Image.new("1", (1, 1), 0)) == (0, 0, 0)


def test_cmyk_without_profile_uses_pillow_conversion() -> None:
    assert _pixel(Image.new("CMYK", (1, 1), (255, 0, 0, 0))) == (0, 255, 255)
    assert _pixel(Image.new("CMYK", (1, 1), (0, 0, 0, 255))) == (0, 0, 0)
    assert _pixel(Image.new("CMYK", (1, 1), (0, 0, 0, 0))) == (255, 255, 255)
    # and through a real CMYK JPEG (Adobe-inverted on disk; Pillow undoes it)
    decoded = decode_image(encode(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "JPEG", quality=100))
    assert np.abs(np.subtract(decoded.image.getpixel((4, 4)), (0, 255, 255))).max() <= 3


def test_cmyk_with_profile_goes_through_color_management() -> None:
    """A real CMYK profile (generated: none ships here) gives littleCMS's colours, not Pillow's formula."""
    profile = cmyk_icc_profile()
    image = Image.new("CMYK", (40, 30), (0, 0, 0, 255))  # full black ink
    image.info["icc_profile"] = profile
    expected = ImageCms.profileToProfile(
        image,
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
        outputMode="RGB",
    )
    assert expected is not None
    out = to_rgb(image)
    assert out.mode == "RGB"
    assert "icc_profile" not in out.info
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    assert out.getpixel((0, 0)) != Image.new("CMYK", (1, 1), (0, 0, 0, 255)).convert("RGB").getpixel((0, 0))
    # and through a real CMYK JPEG carrying that profile
    decoded = decode_image(encode(Image.new("CMYK", (16, 16), (0, 0, 0, 255)), "JPEG", icc_profile=profile))
    assert np.abs(np.subtract(decoded.image.getpixel((8, 8)), out.getpixel((0, 0)))).max() <= 3


def test_cmyk_with_a_mismatched_profile_falls_back() -> None:
    """An RGB profile on CMYK pixels cannot be applied: Pillow's conversion, not a refusal."""
    image = Image.new("CMYK", (1, 1), (255, 0, 0, 0))
    image.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert _pixel(image) == (0, 255, 255)
    image.info["icc_profile"] = b"not a profile"
    assert _pixel(image) == (0, 255, 255)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_sixteen_bit_modes_scale_to_eight_bit(mode: str) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    byte_order = ">u2" if mode == "I;16B" else "<u2"
    image = Image.frombytes(mode, (4, 1), values.astype(byte_order).tobytes())
    out = to_rgb(image)
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]  # type: ignore[index]


def test_int32_mode_in_sixteen_bit_range_scales_like_sixteen_bit() -> None:
    image = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))
    assert image.mode == "I"
    out = to_rgb(image)
    assert [out.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_int32_mode_outside_sixteen_bit_range_is_stretched() -> None:
    image = Image.fromarray(np.array([[-1000, 0, 1000]], dtype=np.int32))
    out = to_rgb(image)
    assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]  # type: ignore[index]


def test_float_images_scale_from_their_range() -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert unit.mode == "F"
    assert [to_rgb(unit).getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]  # type: ignore[index]
    wide = Image.fromarray(np.array([[-2.0, 1.0, 4.0, np.nan]], dtype=np.float32))
    assert [to_rgb(wide).getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 85]  # type: ignore[index]
    constant = Image.fromarray(np.full((2, 2), 7.0, dtype=np.float32))
    assert to_rgb(constant).getpixel((0, 0)) == (7, 7, 7)


def test_ycbcr_converts() -> None:
    image = solid((200, 30, 40)).convert("YCbCr")
    assert np.abs(np.subtract(_pixel(image), (200, 30, 40))).max() <= 3


def test_lab_hsv_and_premultiplied_modes() -> None:
    assert _pixel(Image.new("LAB", (1, 1), (0, 128, 128))) == (1, 0, 1)  # L=0: black
    assert _pixel(Image.new("HSV", (1, 1), (0, 255, 255))) == (255, 0, 0)
    assert _pixel(Image.new("RGBX", (1, 1), (1, 2, 3, 0))) == (1, 2, 3)
    assert _pixel(Image.new("RGBa", (1, 1), (0, 0, 0, 0))) == (255, 255, 255)
    assert _pixel(Image.new("La", (1, 1), (0, 0))) == (255, 255, 255)


def _with_orientation(image: Image.Image, orientation: int, image_format: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    params: dict[str, object] = {"exif": exif}
    if image_format == "JPEG":
        params["quality"] = 95
    return encode(image, image_format, **params)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied(image_format: str) -> None:
    """Orientation 6 = stored sideways, rotate 90 degrees clockwise to view: the left edge goes on top."""
    stored = gradient((64, 48), horizontal=True)  # red grows left -> right
    decoded = decode_image(_with_orientation(stored, 6, image_format))
    assert decoded.original_size == (64, 48)
    assert decoded.image.size == (48, 64)
    top_red = decoded.image.getpixel((24, 1))[0]  # type: ignore[index]
    bottom_red = decoded.image.getpixel((24, 62))[0]  # type: ignore[index]
    assert top_red < 20
    assert bottom_red > 235


def test_exif_orientation_applies_to_sixteen_bit_too() -> None:
    stored = Image.fromarray(np.zeros((3, 5), dtype=np.uint16))
    decoded = decode_image(_with_orientation(stored, 8, "PNG"))
    assert decoded.image.size == (3, 5)


def test_to_rgb_of_an_exif_rotated_pil_image() -> None:
    reopened = Image.open(io.BytesIO(_with_orientation(gradient((64, 48)), 3, "PNG")))  # 180 degrees
    out = to_rgb(reopened)
    assert out.size == (64, 48)
    assert out.getpixel((1, 24))[0] > 235  # type: ignore[index]


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_unreadable_exif_does_not_reject_good_pixels(image_format: str) -> None:
    decoded = decode_image(encode(gradient(), image_format, exif=b"Exif\x00\x00garbage"))
    assert decoded.image.size == (64, 48)


# ---------------------------------------------------------------------------------------------
# bounded decoding: exact strip conversion, reduced output, decode budget, concurrency, memory


def _reference_gray(pixels: np.ndarray, mode: str) -> np.ndarray:
    """The whole-image float64 conversion this module used before strips (kept to prove equality)."""

    def stretch(values: np.ndarray) -> np.ndarray:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if high <= low:
            return np.full(values.shape, int(np.clip(low, 0, 255)), dtype=np.uint8)
        return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)

    if mode == "F":
        values = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            return np.rint(values * 255.0).astype(np.uint8)
        return stretch(values)
    integers = pixels.astype(np.int64)
    if integers.size and (integers.min() < 0 or integers.max() > 65535):
        return stretch(integers.astype(np.float64))
    return ((integers + 128) // 257).astype(np.uint8)


def _gray_cases() -> list[tuple[str, Image.Image]]:
    rng = np.random.default_rng(7)
    shape = (37, 53)
    wide_float = (rng.standard_normal(shape) * 1e4).astype(np.float32)
    wide_float[3, 4], wide_float[5, 6], wide_float[7, 8] = np.nan, np.inf, -np.inf
    unit_float = rng.random(shape, dtype=np.float32)
    unit_float[0, 0] = np.nan
    return [
        ("F wide", Image.fromarray(wide_float)),
        ("F unit", Image.fromarray(unit_float)),
        ("F constant", Image.fromarray(np.full(shape, 300.5, dtype=np.float32))),
        ("I;16", Image.fromarray(rng.integers(0, 65536, shape, dtype=np.uint16))),
        (
            "I;16B",
            Image.frombytes("I;16B", shape[::-1], rng.integers(0, 65536, shape).astype(">u2").tobytes()),
        ),
        ("I in range", Image.fromarray(rng.integers(0, 65536, shape).astype(np.int32))),
        ("I wide", Image.fromarray(rng.integers(-(2**31), 2**31 - 1, shape).astype(np.int32))),
    ]


@pytest.mark.parametrize("strip_pixels", [1, 64, 1 << 19])
@pytest.mark.parametrize("case", range(7))
def test_strip_conversion_equals_the_whole_image_float64_reference(
    case: int, strip_pixels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Converted strip by strip (down to one row at a time), the pixels are those of the old code."""
    monkeypatch.setattr(images, "_STRIP_PIXELS", strip_pixels)
    name, image = _gray_cases()[case]
    expected = _reference_gray(np.asarray(image), image.mode)
    out = np.asarray(to_rgb(image))
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], expected, err_msg=name)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P-transparent", "CMYK", "YCbCr", "L", "1"])
def test_strip_conversion_equals_pillow_whole_image(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "_STRIP_PIXELS", 50)
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (29, 41, 4), dtype=np.uint8), "RGBA")
    if mode == "P-transparent":
        image = rgba.convert("RGB").quantize(16)
        image.info["transparency"] = 3
        whole = image.convert("RGBA")
    else:
        image = rgba if mode == "RGBA" else rgba.convert(mode)
        whole = image.convert("LA" if mode == "LA" else "RGBA") if mode in ("LA", "PA", "RGBA") else image
    if whole.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", whole.size, (255, 255, 255, 255))
        expected = Image.alpha_composite(background, whole.convert("RGBA")).convert("RGB")
    else:
        expected = whole.convert("RGB")
    np.testing.assert_array_equal(np.asarray(to_rgb(image)), np.asarray(expected))


def test_large_pictures_come_back_box_reduced_and_upright() -> None:
    limits = ImageLimits(max_output_pixels=1000)
    stored = gradient((90, 60))  # 5400 px -> factor 3 -> 30x20
    reduced = decode_image(encode(stored, "PNG"), limits)
    assert reduced.image.size == (30, 20)
    assert reduced.original_size == (90, 60)
    np.testing.assert_array_equal(np.asarray(reduced.image), np.asarray(stored.reduce(3)))
    rotated = decode_image(_with_orientation(stored, 6, "PNG"), limits)
    assert rotated.image.size == (20, 30)
    assert rotated.image.getpixel((10, 1))[0] < 20  # type: ignore[index]  # left edge now on top


def test_large_jpeg_is_decoded_at_reduced_scale() -> None:
    limits = ImageLimits(max_output_pixels=64 * 48)
    decoded = decode_image(encode(gradient((256, 192)), "JPEG", quality=95), limits)
    assert decoded.original_size == (256, 192)
    assert decoded.image.width * decoded.image.height <= 64 * 48
    assert decoded.image.size == (64, 48)  # libjpeg's 1/4 scale, no box pass needed
    assert decoded.image.getpixel((1, 24))[0] < 30 < 225 < decoded.image.getpixel((62, 24))[0]  # type: ignore[index]


def test_small_pictures_are_not_reduced() -> None:
    assert images.reduction_factor((4000, 3000), ImageLimits().max_output_pixels) == 1
    assert images.reduction_factor((4001, 3000), ImageLimits().max_output_pixels) == 2


def test_decode_budget_refuses_deep_images_from_the_header() -> None:
    """A float TIFF whose decoding alone would pass the budget is refused before any pixel is read."""
    limits = ImageLimits(max_decode_bytes=1_000_000)
    side = 400  # 160 000 px x 4 bytes x libtiff's strip copy = 1.28 MB
    data = tiff_stream(side, side, bits=32, sample_format=3, row=bytes(4 * side))
    with pytest.raises(InvalidImageError, match=r"400x400 pixels; a TIFF image .* at most 0.1 megapixels"):
        decode_image(data, limits)
    assert decode_image(data, ImageLimits(max_decode_bytes=1_300_000)).image.size == (400, 400)
    eight_bit = decode_image(encode(solid(size=(400, 400)), "PNG"), limits)  # 640 kB: within budget
    assert eight_bit.image.size == (400, 400)


def test_hostile_set_decisions_at_a_small_cap() -> None:
    """Each file of the hostile set is accepted or refused as it must be; none passes the output cap."""
    limits = ImageLimits(max_pixels=250_000, max_decode_bytes=1 << 20, max_output_pixels=40_000)
    seen = 0
    for hostile in hostile_files(limits, include_slow=False):
        seen += 1
        try:
            decoded = decode_image(hostile.data, limits)
        except InvalidImageError as err:
            assert not hostile.accepted, f"{hostile.name} refused: {err.user_message}"
            assert "\n" not in err.user_message and len(err.user_message) < 200
            continue
        assert hostile.accepted, f"{hostile.name} was decoded"
        assert decoded.image.mode == "RGB"
        assert decoded.image.width * decoded.image.height <= limits.max_output_pixels, hostile.name
    assert seen >= 20


def test_concurrent_decodes_wait_for_a_slot() -> None:
    limits = ImageLimits(max_concurrent_decodes=1)
    data = encode(noise(), "PNG")
    finished = threading.Event()

    def decode() -> None:
        decode_image(data, limits)
        finished.set()

    with images.decode_slot(limits):  # the only slot is taken
        worker = threading.Thread(target=decode)
        worker.start()
        assert not finished.wait(0.3)
    assert finished.wait(10)
    worker.join()


MEMORY_SET = frozenset(
    {
        "png-bomb-rgba-at-cap",  # the largest accepted 8-bit source, composited over white
        "tiff-float-at-budget",  # float data through libtiff, stretched
        "webp-at-budget",  # the decoder with the most copies of its own
        "tiff-float-at-cap",  # refused from the header by the budget
    }
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from /proc")
def test_no_accepted_file_grows_a_process_by_300_mib(tmp_path: Path) -> None:
    """The worst files of the hostile set at the default limits, each decoded in a fresh process
    (about 2 s each). bench/decode_bench.py runs the whole set and prints the table."""
    limits = ImageLimits()
    files = list(hostile_files(limits, names=MEMORY_SET))
    assert {f.name for f in files} == MEMORY_SET
    for hostile in files:
        measured = measure_decode(hostile.data, limits, str(tmp_path))
        assert measured.decoded == hostile.accepted, f"{hostile.name}: {measured.outcome}"
        assert measured.growth_bytes < 300 * 2**20, f"{hostile.name} grew {measured.growth_bytes >> 20} MiB"
