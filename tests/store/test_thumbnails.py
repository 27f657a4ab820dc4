"""ThumbnailStore: small re-encoded JPEGs that outlive Discord's expiring attachment links."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plipbot.errors import StoreError
from store import ThumbnailStore, case_point_id
from store.thumbnails import THUMBNAIL_MAX_SIDE

CASE_ID = case_point_id(1, 2, 3)
OTHER_ID = case_point_id(1, 2, 4)


def decode(data: bytes | None) -> Image.Image:
    assert data is not None
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def thumbnails(tmp_path: Path) -> ThumbnailStore:
    return ThumbnailStore(tmp_path / "thumbnails")


def test_put_shrinks_to_the_max_side_and_stores_a_jpeg(thumbnails: ThumbnailStore) -> None:
    path = thumbnails.put(CASE_ID, Image.new("RGB", (1024, 512), (200, 40, 120)))
    assert path == thumbnails.path(CASE_ID)
    assert path.parent.name == CASE_ID[:2]
    stored = decode(thumbnails.get_bytes(CASE_ID))
    assert stored.format == "JPEG"
    assert stored.size == (THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE // 2)
    assert stored.getpixel((10, 10)) == pytest.approx((200, 40, 120), abs=4)


def test_small_images_are_not_enlarged(thumbnails: ThumbnailStore) -> None:
    thumbnails.put(CASE_ID, Image.new("RGB", (100, 60)))
    assert decode(thumbnails.get_bytes(CASE_ID)).size == (100, 60)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16", "CMYK"])
def test_any_image_mode_becomes_a_viewable_jpeg(thumbnails: ThumbnailStore, mode: str) -> None:
    if mode == "I;16":
        image = Image.fromarray(np.arange(0, 60_000, 60, dtype=np.uint16).reshape(20, 50))
    else:
        image = Image.new(mode, (50, 20))
    thumbnails.put(CASE_ID, image)
    assert decode(thumbnails.get_bytes(CASE_ID)).mode in ("RGB", "L")


def test_transparent_pixels_are_shown_on_white(thumbnails: ThumbnailStore) -> None:
    thumbnails.put(CASE_ID, Image.new("RGBA", (40, 40), (0, 0, 0, 0)))
    assert decode(thumbnails.get_bytes(CASE_ID)).getpixel((20, 20)) == pytest.approx((255, 255, 255), abs=2)


def test_put_replaces_atomically_and_leaves_no_temporary_files(thumbnails: ThumbnailStore) -> None:
    thumbnails.put(CASE_ID, Image.new("RGB", (64, 64), (0, 0, 0)))
    thumbnails.put(CASE_ID, Image.new("RGB", (32, 32), (255, 255, 255)))
    assert decode(thumbnails.get_bytes(CASE_ID)).size == (32, 32)
    assert [entry.name for entry in thumbnails.path(CASE_ID).parent.iterdir()] == [f"{CASE_ID}.jpg"]


def test_missing_thumbnails_read_as_none_and_delete_quietly(thumbnails: ThumbnailStore) -> None:
    assert thumbnails.get_bytes(CASE_ID) is None
    assert not thumbnails.exists(CASE_ID)
    thumbnails.delete([CASE_ID])


def test_ids_lists_stored_thumbnails_and_delete_removes_them(thumbnails: ThumbnailStore) -> None:
    assert list(thumbnails.ids()) == []
    for point_id in (CASE_ID, OTHER_ID):
        thumbnails.put(point_id, Image.new("RGB", (8, 8)))
    stray = thumbnails.path(CASE_ID).parent / ".tmp-unfinished.jpg"
    stray.write_bytes(b"partial")
    assert sorted(thumbnails.ids()) == sorted([CASE_ID, OTHER_ID])
    thumbnails.delete([CASE_ID.upper()])
    assert list(thumbnails.ids()) == [OTHER_ID]
    assert thumbnails.exists(OTHER_ID)


def test_ids_that_are_not_uuids_are_rejected(thumbnails: ThumbnailStore) -> None:
    for bad in ("../../etc/passwd", "", "abc"):
        with pytest.raises(ValueError):
            thumbnails.path(bad)


def test_an_unwritable_folder_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    with pytest.raises(StoreError):
        ThumbnailStore(blocker).put(CASE_ID, Image.new("RGB", (8, 8)))
