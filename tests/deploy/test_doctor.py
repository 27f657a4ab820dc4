"""`plipbot doctor` against the embedded default, against reachable services (a real Redis and
PostgreSQL when they run here, small HTTP stand-ins for Qdrant and Discord), and against services that
are not there: closed ports on 127.0.0.1 and a port that accepts connections but never answers."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from plipbot.cli import main
from plipbot.doctor import CheckResult, redact_url, run_checks
from plipbot.settings import load_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = os.environ.get(
    "PLIPBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DISCORD_TOKEN = "MTIz.fake.token-for-tests"


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


class _StandIn(BaseHTTPRequestHandler):
    """Qdrant's GET / and GET /collections, Discord's GET /api/v10/users/@me."""

    api_key: str | None = None

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/api/v10/users/@me":
            if self.headers.get("Authorization") == f"Bot {DISCORD_TOKEN}":
                self._send(200, {"id": "4242", "username": "plipbot-test"})
            else:
                self._send(401, {"message": "401: Unauthorized", "code": 0})
            return
        if self.api_key and self.headers.get("api-key") != self.api_key and self.path != "/":
            self._send(401, {"status": {"error": "Must provide an API key or an Authorization bearer token"}})
        elif self.path == "/":
            self._send(200, {"title": "qdrant - vector search engine", "version": "1.19.1"})
        elif self.path == "/collections":
            self._send(200, {"result": {"collections": [{"name": "cases_a"}]}, "status": "ok", "time": 0})
        else:
            self._send(404, {"status": {"error": "not found"}})


@pytest.fixture
def stand_in() -> Iterator[str]:
    """http://127.0.0.1:PORT serving the Qdrant and Discord stand-ins (Qdrant api key: `sekrit`)."""
    handler = type("Handler", (_StandIn,), {"api_key": "sekrit"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["doctor", *args])
    out = capsys.readouterr().out
    return code, out.splitlines()


def by_name(lines: list[str]) -> dict[str, str]:
    return {line.split(" ", 1)[1].split(":", 1)[0]: line for line in lines}


# ------------------------------------------------------------------------------------ embedded default


def test_fresh_embedded_default_fails_only_on_missing_weights(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, lines = doctor(capsys)
    assert code == 1
    checks = by_name(lines)
    assert list(checks) == ["broker", "store", "ledger", "weights", "precision", "discord"]
    assert checks["broker"] == "ok broker: embedded (no broker): tasks run inside `plipbot run`"
    assert checks["store"].startswith("ok store: embedded store (qdrant-edge) in ")
    assert str(tmp_path / "data" / "store") in checks["store"]
    assert checks["ledger"].startswith("ok ledger: SQLite ")
    assert checks["weights"].startswith("FAIL weights: PLIP weights are not cached in ")
    assert "run `plipbot model fetch plip`" in checks["weights"]
    assert checks["discord"].startswith("skip discord: no bot token (PLIPBOT_DISCORD__TOKEN)")
    assert checks["precision"].startswith("ok precision: ") and "(auto: " in checks["precision"]
    assert " on cpu (" in checks["precision"]
    assert [line for line in lines if line.startswith("FAIL")] == [checks["weights"]]
    assert not list((tmp_path / "data" / "models").glob("**/*.safetensors")), "doctor must not download"


def test_cached_weights_make_the_default_all_ok(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path
) -> None:
    monkeypatch.setenv("PLIPBOT_MODEL__NAME", str(tiny_checkpoint))
    code, lines = doctor(capsys, "--skip", "discord")
    assert code == 0, lines
    assert by_name(lines)["weights"].startswith("ok weights: local checkpoint tiny-random-clip")


def test_precision_line_shows_the_choice_and_refuses_impossible_ones(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLIPBOT_MODEL__DEVICE", "cpu")
    code, lines = doctor(capsys, "--only", "precision")
    assert code == 0 and lines[0].startswith("ok precision: ") and "(auto: " in lines[0]
    chosen = lines[0].removeprefix("ok precision: ").split()[0]
    assert chosen in ("fp32", "bf16"), lines  # never fp16 or int8 on a CPU
    monkeypatch.setenv("PLIPBOT_MODEL__PRECISION", "fp16")
    code, lines = doctor(capsys, "--only", "precision")
    assert code == 1 and lines[0].startswith("FAIL precision: fp16 needs a CUDA GPU")
    monkeypatch.setenv("PLIPBOT_MODEL__PRECISION", "fp32")
    code, lines = doctor(capsys, "--only", "precision")
    assert code == 0 and lines[0].startswith("ok precision: fp32 (requested) on cpu")


def test_offline_setting_changes_the_advice(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("PLIPBOT_MODEL__OFFLINE", "true")
    code, lines = doctor(capsys, "--only", "weights")
    assert code == 1
    assert "run it where the Hugging Face Hub is reachable" in lines[0]


def test_unwritable_embedded_store_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setenv("PLIPBOT_DATA_DIR", str(blocker))
    code, lines = doctor(capsys, "--only", "store,ledger")
    assert code == 1
    checks = by_name(lines)
    assert checks["store"].startswith(
        f"FAIL store: embedded store folder {blocker / 'store'} is not writable:"
    )
    assert checks["ledger"].startswith("FAIL ledger: cannot create the folder of sqlite:///")


# ------------------------------------------------------------------------------------ unreachable


def test_unreachable_services_fail_fast_and_clearly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("PLIPBOT_BROKER_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    monkeypatch.setenv("PLIPBOT_STORE__URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv(
        "PLIPBOT_LEDGER__URL", f"postgresql+psycopg://plipbot:hunter2@127.0.0.1:{port}/plipbot"
    )
    monkeypatch.setenv("PLIPBOT_DISCORD__TOKEN", DISCORD_TOKEN)
    monkeypatch.setenv("PLIPBOT_DISCORD__API_BASE", f"http://127.0.0.1:{port}/api/v10")
    started = time.monotonic()
    code, lines = doctor(capsys, "--skip", "weights")
    elapsed = time.monotonic() - started
    assert code == 1
    checks = by_name(lines)
    assert checks["broker"] == (
        f"FAIL broker: broker at redis://:***@127.0.0.1:{port}/0 is unreachable: Connection refused"
    )
    assert (
        checks["store"]
        == f"FAIL store: Qdrant server at http://127.0.0.1:{port} is unreachable: Connection refused"
    )
    assert checks["ledger"].startswith(
        f"FAIL ledger: cannot connect to postgresql+psycopg://plipbot:***@127.0.0.1:{port}/"
    )
    assert checks["ledger"].endswith("Connection refused")
    assert checks["discord"] == (
        f"FAIL discord: token set, but the Discord API at http://127.0.0.1:{port}/api/v10 is unreachable: "
        "Connection refused"
    )
    output = "\n".join(lines)
    assert "hunter2" not in output and DISCORD_TOKEN not in output
    assert elapsed < 5, f"unreachable services took {elapsed:.1f} s"


def test_silent_services_time_out(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    monkeypatch.setenv("PLIPBOT_BROKER_URL", f"redis://127.0.0.1:{silent_port}/0")
    monkeypatch.setenv("PLIPBOT_STORE__URL", f"http://127.0.0.1:{silent_port}")
    monkeypatch.setenv("PLIPBOT_DISCORD__TOKEN", DISCORD_TOKEN)
    monkeypatch.setenv("PLIPBOT_DISCORD__API_BASE", f"http://127.0.0.1:{silent_port}/api/v10")
    started = time.monotonic()
    code, lines = doctor(capsys, "--only", "broker,store,discord", "--timeout", "0.5")
    elapsed = time.monotonic() - started
    assert code == 1
    for line in lines:
        assert line.startswith("FAIL ") and line.endswith("timed out"), line
    assert elapsed < 4, f"three silent services took {elapsed:.1f} s with a 0.5 s time-out"


def test_a_hung_check_is_reported_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import plipbot.doctor as doctor_module

    def hang(settings: object, timeout_s: float) -> CheckResult:
        time.sleep(30)
        raise AssertionError("unreachable")

    monkeypatch.setattr(doctor_module, "check_broker", hang)
    started = time.monotonic()
    [result] = run_checks(load_settings(), only=["broker"], timeout_s=0.2)
    assert result == CheckResult("broker", "FAIL", "no answer within 1.4 s")
    assert time.monotonic() - started < 3


# ------------------------------------------------------------------------------------ reachable


@pytest.fixture(scope="module")
def redis_up() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture(scope="module")
def postgres_up() -> str:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(POSTGRES_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError:
        if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
            pytest.fail("CI is set, so PostgreSQL must be running on 127.0.0.1:5432")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    finally:
        engine.dispose()
    return POSTGRES_URL


def test_reachable_services_are_ok(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_up: str,
    postgres_up: str,
    stand_in: str,
) -> None:
    monkeypatch.setenv("PLIPBOT_BROKER_URL", redis_up)
    monkeypatch.setenv("PLIPBOT_RESULT_BACKEND_URL", "redis://127.0.0.1:6379/1")
    monkeypatch.setenv("PLIPBOT_STORE__URL", stand_in)
    monkeypatch.setenv("PLIPBOT_STORE__API_KEY", "sekrit")
    monkeypatch.setenv("PLIPBOT_LEDGER__URL", postgres_up)
    monkeypatch.setenv("PLIPBOT_DISCORD__TOKEN", DISCORD_TOKEN)
    monkeypatch.setenv("PLIPBOT_DISCORD__API_BASE", f"{stand_in}/api/v10")
    code, lines = doctor(capsys, "--skip", "weights")
    assert code == 0, lines
    checks = by_name(lines)
    assert list(checks) == ["broker", "results", "store", "ledger", "precision", "discord"]
    assert checks["broker"].startswith(f"ok broker: broker at {redis_up} answers (Redis ")
    assert checks["results"].startswith("ok results: result backend at redis://127.0.0.1:6379/1 answers")
    assert checks["store"] == f"ok store: Qdrant 1.19.1 at {stand_in} (1 collections)"
    assert checks["ledger"].startswith("ok ledger: PostgreSQL ")
    assert checks["discord"] == "ok discord: token accepted: bot plipbot-test (id 4242)"
    assert "sekrit" not in "\n".join(lines)


def test_rejected_credentials_say_how_to_fix_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stand_in: str
) -> None:
    monkeypatch.setenv("PLIPBOT_STORE__URL", stand_in)
    monkeypatch.setenv("PLIPBOT_DISCORD__TOKEN", "wrong")
    monkeypatch.setenv("PLIPBOT_DISCORD__API_BASE", f"{stand_in}/api/v10")
    code, lines = doctor(capsys, "--only", "store,discord")
    assert code == 1
    checks = by_name(lines)
    assert checks["store"] == (
        f"FAIL store: Qdrant server at {stand_in} refused the API key (HTTP 401): "
        "set PLIPBOT_STORE__API_KEY to the server's api key"
    )
    assert checks["discord"].startswith("FAIL discord: Discord rejected the token (HTTP 401): reset it")
    code, lines = doctor(capsys, "--only", "discord", "--offline")
    assert (code, lines) == (0, ["ok discord: token set (not verified: --offline)"])


# ------------------------------------------------------------------------------------ command line


def test_unknown_check_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--only", "broker,typo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "error: Unknown check typo; the checks are: "
        "broker, results, blobs, store, ledger, weights, precision, discord."
    ]


def test_redact_url() -> None:
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("postgresql+psycopg://u:pw@db/x") == "postgresql+psycopg://u:***@db/x"
    assert redact_url("http://qdrant:6333") == "http://qdrant:6333"
