"""ingest.phash: reposts (re-encoded, resized, stripped) stay near; different pictures stay far."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

from ingest.clean import clean_image
from ingest.phash import hamming, is_near_duplicate, perceptual_hash
from model.images import decode_image
from tests.imagegen import encode, ihc, texture

Transform = Callable[[Image.Image], Image.Image]


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return ihc()


@pytest.fixture(scope="module")
def original_hash(original: Image.Image) -> str:
    return perceptual_hash(original)


def _reopen(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_hash_is_64_bit_hex(original_hash: str) -> None:
    assert len(original_hash) == 16
    assert int(original_hash, 16) >= 0
    assert original_hash == original_hash.lower()


def test_hash_is_deterministic(original: Image.Image, original_hash: str) -> None:
    assert perceptual_hash(original.copy()) == original_hash


@pytest.mark.parametrize(
    "repost",
    [
        pytest.param(lambda im: _reopen(encode(im, "JPEG", quality=60)), id="jpeg-q60"),
        pytest.param(lambda im: im.resize((460, 460), Image.Resampling.BILINEAR), id="resized-90pct"),
        pytest.param(lambda im: im.resize((256, 256)), id="resized-50pct"),
        pytest.param(lambda im: _reopen(encode(im.resize((300, 300)), "WEBP", quality=70)), id="webp-small"),
        pytest.param(lambda im: clean_image(decode_image(encode(im, "PNG"))).image, id="cleaned"),
    ],
)
def test_reposts_are_near_duplicates(original: Image.Image, original_hash: str, repost: Transform) -> None:
    copy_hash = perceptual_hash(repost(original))
    assert hamming(original_hash, copy_hash) <= 6
    assert is_near_duplicate(original_hash, copy_hash)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda im: texture((256, 256)), id="different-tissue-like-image"),
        pytest.param(lambda im: im.rotate(90), id="rotated"),
        pytest.param(lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), id="mirrored"),
        pytest.param(lambda im: im.crop((0, 0, 256, 512)), id="half-crop"),
    ],
)
def test_different_images_are_far(original: Image.Image, original_hash: str, other: Transform) -> None:
    other_hash = perceptual_hash(other(original))
    assert hamming(original_hash, other_hash) > 12
    assert not is_near_duplicate(original_hash, other_hash)


def test_transparency_is_judged_over_white() -> None:
    """Fully transparent pixels hash like the white a viewer sees, not like their hidden colour."""
    base = texture((128, 128))
    hidden = base.convert("RGBA")
    hidden.putalpha(Image.new("L", base.size, 0))
    assert perceptual_hash(hidden) == perceptual_hash(Image.new("RGB", base.size, (255, 255, 255)))


def test_hamming_counts_bits() -> None:
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("0000000000000000", "ffffffffffffffff") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2
    assert hamming("ABCDEF0123456789", "abcdef0123456789") == 0


def test_threshold_is_inclusive() -> None:
    assert is_near_duplicate("0000000000000000", "000000000000003f")  # 6 bits
    assert not is_near_duplicate("0000000000000000", "000000000000007f")  # 7 bits
    assert is_near_duplicate("0000000000000000", "000000000000007f", max_distance=7)


@pytest.mark.parametrize("bad", ["", "abc", "zzzzzzzzzzzzzzzz", "0" * 17])
def test_malformed_hashes_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="hash"):
        hamming(bad, "0" * 16)
