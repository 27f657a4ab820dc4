"""Short-lived storage for uploaded bytes, so task messages carry a key instead of megabytes.

The bot parks an attachment here (`put`) and sends the key; the worker reads it back (`get`). Keys are
the SHA-256 of the content: putting the same bytes twice is harmless (the TTL is refreshed), and a
redelivered task reads exactly the bytes its first delivery saw. Entries expire on their own because
nobody deletes them after the reply (the same image may be asked about again within minutes).

Two backends behind one interface: Redis when a broker is configured (the bot and the workers are
separate processes), and process memory in embedded mode (they are one process).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from model.images import describe_bytes
from plipbot.errors import InvalidImageError, PlipbotError, ServiceUnavailableError

if TYPE_CHECKING:
    import redis


class BlobNotFoundError(PlipbotError):
    """The key never existed or its bytes expired (the user should send the image again)."""


class BlobStore(Protocol):
    """Put bytes, get them back by key until the TTL runs out."""

    max_bytes: int

    def put(self, data: bytes) -> str: ...

    def get(self, key: str) -> bytes: ...


def blob_key(data: bytes) -> str:
    """Content address of `data` (what `ImageRef.blob` holds)."""
    return hashlib.sha256(data).hexdigest()


def _check_size(data: bytes, max_bytes: int) -> None:
    if not data:
        raise InvalidImageError("That file is empty.")
    if len(data) > max_bytes:
        raise InvalidImageError(
            f"That file is {describe_bytes(len(data))}; the limit is {describe_bytes(max_bytes)}."
        )


_EXPIRED = "That upload has expired or was never received; please send the image again."


class RedisBlobStore:
    """Blobs as Redis strings with a TTL, under `<prefix>plipbot:blob:<sha256>`."""

    def __init__(self, client: redis.Redis, *, ttl_s: int, max_bytes: int, prefix: str = "") -> None:
        self._client = client
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._prefix = f"{prefix}plipbot:blob:"

    @classmethod
    def from_url(
        cls, url: str, *, ttl_s: int, max_bytes: int, prefix: str = "", connect_timeout_s: float = 2.0
    ) -> RedisBlobStore:
        """A store on its own connection pool (socket time-outs set, so a dead Redis fails fast)."""
        import redis

        client = redis.Redis.from_url(
            url, socket_connect_timeout=connect_timeout_s, socket_timeout=max(5.0, connect_timeout_s)
        )
        return cls(client, ttl_s=ttl_s, max_bytes=max_bytes, prefix=prefix)

    def _redis_key(self, key: str) -> str:
        return self._prefix + key

    def put(self, data: bytes) -> str:
        """Store `data` (at most `max_bytes`) and return its key."""
        import redis

        _check_size(data, self.max_bytes)
        key = blob_key(data)
        try:
            self._client.set(self._redis_key(key), data, ex=self.ttl_s)
        except redis.RedisError as err:
            raise ServiceUnavailableError(f"The upload store (Redis) is unreachable: {err}.") from err
        return key

    def get(self, key: str) -> bytes:
        """The bytes under `key`; `BlobNotFoundError` once they have expired."""
        import redis

        try:
            data = self._client.get(self._redis_key(key))
        except redis.RedisError as err:
            raise ServiceUnavailableError(f"The upload store (Redis) is unreachable: {err}.") from err
        if data is None:
            raise BlobNotFoundError(_EXPIRED)
        return bytes(data)  # type: ignore[arg-type]


class MemoryBlobStore:
    """Embedded mode: the same contract in process memory, bounded in entries and total bytes.

    Oldest entries are evicted first when a bound is hit, so a burst of uploads cannot grow the
    bot's memory without limit.
    """

    def __init__(
        self, *, ttl_s: int, max_bytes: int, max_total_bytes: int = 256 * 1024 * 1024, max_entries: int = 1024
    ) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.max_total_bytes = max(max_total_bytes, max_bytes)
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        """Store `data` (at most `max_bytes`) and return its key."""
        _check_size(data, self.max_bytes)
        key = blob_key(data)
        now = time.monotonic()
        with self._lock:
            self._drop(key)
            self._entries[key] = (now + self.ttl_s, bytes(data))
            self._total += len(data)
            self._evict(now)
        return key

    def get(self, key: str) -> bytes:
        """The bytes under `key`; `BlobNotFoundError` once they have expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= time.monotonic():
                self._drop(key)
                raise BlobNotFoundError(_EXPIRED)
            return entry[1]

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._total -= len(entry[1])

    def _evict(self, now: float) -> None:
        expired = [key for key, (deadline, _) in self._entries.items() if deadline <= now]
        for key in expired:
            self._drop(key)
        while self._entries and (len(self._entries) > self.max_entries or self._total > self.max_total_bytes):
            self._drop(next(iter(self._entries)))
