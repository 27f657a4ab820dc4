"""Real parts for worker tests: worker subprocesses, a private redis-server, and their configuration."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from plipbot.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SHARED_REDIS = "redis://127.0.0.1:6379/0"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@dataclass
class WorkerConfig:
    """One source for both the test's Settings and a worker subprocess's environment."""

    broker_url: str
    key_prefix: str
    data_dir: Path
    model_name: str | None = None
    workers: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        model = {"name": self.model_name} if self.model_name else {}
        return Settings(
            broker_url=self.broker_url,
            data_dir=self.data_dir,
            model=model,  # type: ignore[arg-type]
            workers={"key_prefix": self.key_prefix, "allow_file_urls": True, **self.workers},  # type: ignore[arg-type]
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLIPBOT_")}
        env.update(
            PYTHONPATH=str(REPO),
            HF_HUB_OFFLINE="1",
            PLIPBOT_BROKER_URL=self.broker_url,
            PLIPBOT_DATA_DIR=str(self.data_dir),
            PLIPBOT_WORKERS__KEY_PREFIX=self.key_prefix,
            PLIPBOT_WORKERS__ALLOW_FILE_URLS="true",
        )
        if self.model_name:
            env["PLIPBOT_MODEL__NAME"] = self.model_name
        for key, value in self.workers.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"PLIPBOT_WORKERS__{key.upper()}"] = text
        return env


class WorkerProcess:
    """A worker subprocess in its own process group, with its log in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> WorkerProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[self._log_offset :] if self.log_path.exists() else ""

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> WorkerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return self
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"worker did not become ready:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the worker and any children it forked (its process group, which we created)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


def probe_worker(
    config: WorkerConfig, log_path: Path, *, pool: str = "threads", concurrency: int = 2
) -> WorkerProcess:
    argv = [sys.executable, "-m", "tests.workers.probes", f"--pool={pool}", f"--concurrency={concurrency}"]
    return WorkerProcess(argv, config.env(), log_path)


def plipbot_worker(config: WorkerConfig, log_path: Path, *args: str) -> WorkerProcess:
    argv = [sys.executable, "-m", "plipbot.cli", "worker", *args]
    return WorkerProcess(argv, config.env(), log_path)


class PrivateRedis:
    """A throw-away redis-server on a free port, persisting to an append-only file so it can restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, start_new_session=True)
        deadline = time.monotonic() + 10
        while not redis_alive(self.url):
            if time.monotonic() > deadline:
                raise AssertionError("private redis-server did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, *, interval_s: float = 0.02) -> None:
    """Poll `predicate` until it holds; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval_s)
