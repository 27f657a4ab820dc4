"""Fixtures for worker tests: Redis (shared, isolated by key prefix, or private) and worker configs.

The shared Redis on 127.0.0.1:6379 is used by other test runs at the same time, so every key, queue
and result of this run lives under a unique prefix (`workers.key_prefix`), deleted at the end. Tests
that restart Redis start their own server on a free port instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.workers.harness import SHARED_REDIS, PrivateRedis, WorkerConfig, redis_alive


@pytest.fixture(scope="session")
def shared_redis() -> str:
    if not redis_alive(SHARED_REDIS):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return SHARED_REDIS


@pytest.fixture(scope="session")
def key_prefix(shared_redis: str) -> Iterator[str]:
    """A prefix no other run uses; every key under it is deleted at the end of the session."""
    prefix = f"plipbot-test-{os.getpid()}-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(shared_redis)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def shared_config(shared_redis: str, key_prefix: str, tmp_path: Path) -> WorkerConfig:
    """A config on the shared Redis, with a per-test sub-prefix so tests' queues never mix."""
    return WorkerConfig(shared_redis, f"{key_prefix}{uuid.uuid4().hex[:6]}:", tmp_path / "worker-data")


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not any((Path(d) / "redis-server").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("redis-server is not installed")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = PrivateRedis(directory)
    server.start()
    yield server
    server.kill()
