"""Perceptual hashes: catching reposts of the same picture before they crowd the similar-case results.

A repost is rarely byte-identical: chat apps re-encode, resize and strip metadata. pHash (the DCT of
a 32x32 grey thumbnail, 64 bits) survives all three, and comparing two hashes is a popcount, so it is
the cheap first check before the embedding-cosine one. It is not robust to crops or rotations; those
are left to the embedding.

Hashes are kept as 16-character hex strings: that is what the store and the ledger persist.
"""

from __future__ import annotations

import imagehash
from PIL import Image

from model.images import to_rgb

HASH_BITS = 64
_HEX_DIGITS = HASH_BITS // 4


def perceptual_hash(image: Image.Image) -> str:
    """imagehash's 64-bit pHash of `image`, as 16 lowercase hex digits.

    The image goes through `to_rgb` first, so transparency and orientation are judged the way a
    viewer sees them (imagehash alone would drop alpha and ignore EXIF orientation).
    """
    return str(imagehash.phash(to_rgb(image), hash_size=8))


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of equal length."""
    return (_parse(a) ^ _parse(b)).bit_count()


def is_near_duplicate(a: str, b: str, max_distance: int = 6) -> bool:
    """True when two pHashes differ in at most `max_distance` of 64 bits.

    Six bits keeps re-encodes and resizes together (typically 0-4 bits apart) while unrelated
    images sit near 32; tissue of the same type and stain at the same magnification can come
    closer than unrelated photographs, which is why the threshold is conservative.
    """
    return hamming(a, b) <= max_distance


def _parse(value: str) -> int:
    if len(value) != _HEX_DIGITS:
        raise ValueError(f"expected a {HASH_BITS}-bit hash as {_HEX_DIGITS} hex digits, got {value!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise ValueError(f"not a hex hash: {value!r}") from None
