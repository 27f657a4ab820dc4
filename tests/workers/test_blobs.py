"""The blob store contract, run against both backends (Redis and process memory)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from plipbot.errors import InvalidImageError, ServiceUnavailableError
from tests.workers.harness import free_port
from workers.blobs import BlobNotFoundError, BlobStore, MemoryBlobStore, RedisBlobStore, blob_key

MAX_BYTES = 4096


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    if request.param == "memory":
        yield MemoryBlobStore(ttl_s=1, max_bytes=MAX_BYTES)
        return
    url = request.getfixturevalue("shared_redis")
    prefix = request.getfixturevalue("key_prefix")
    yield RedisBlobStore(redis.Redis.from_url(url), ttl_s=1, max_bytes=MAX_BYTES, prefix=prefix)


def test_put_then_get_returns_the_same_bytes_under_their_content_key(store: BlobStore) -> None:
    data = b"\x89PNG not really" * 10
    key = store.put(data)
    assert key == blob_key(data)
    assert store.get(key) == data
    assert store.put(data) == key  # idempotent


def test_entries_expire(store: BlobStore) -> None:
    key = store.put(b"short-lived")
    time.sleep(1.2)
    with pytest.raises(BlobNotFoundError, match="expired"):
        store.get(key)


def test_size_cap_and_empty_uploads_are_refused(store: BlobStore) -> None:
    with pytest.raises(InvalidImageError, match="limit"):
        store.put(b"x" * (MAX_BYTES + 1))
    with pytest.raises(InvalidImageError, match="empty"):
        store.put(b"")
    with pytest.raises(BlobNotFoundError):
        store.get(blob_key(b"never stored"))


def test_memory_store_evicts_oldest_beyond_its_bounds() -> None:
    store = MemoryBlobStore(ttl_s=60, max_bytes=100, max_total_bytes=250, max_entries=10)
    keys = [store.put(bytes([i]) * 100) for i in range(3)]
    with pytest.raises(BlobNotFoundError):
        store.get(keys[0])
    assert store.get(keys[2]) == bytes([2]) * 100


def test_unreachable_redis_is_a_service_error() -> None:
    store = RedisBlobStore.from_url(
        f"redis://127.0.0.1:{free_port()}/0", ttl_s=10, max_bytes=MAX_BYTES, connect_timeout_s=0.5
    )
    with pytest.raises(ServiceUnavailableError, match="unreachable"):
        store.put(b"data")
