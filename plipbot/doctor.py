"""`plipbot doctor`: is every configured dependency there? One line per check, fast failures.

Each check is a plain function of the settings that returns a `CheckResult` and never raises; network
checks use `timeout_s` for every connect and read, and all checks run at once on daemon threads, so an
unreachable service costs one time-out, not one per check, and a hung driver cannot keep the command
from finishing. Nothing here downloads weights, writes to the corpus or prints a secret.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from plipbot import __version__
from plipbot.redaction import redact_secrets, redact_url
from plipbot.settings import Settings

Status = Literal["ok", "FAIL", "skip"]

#: Every check, in the order lines are printed. `results` and `blobs` run only when they are configured
#: apart from the broker; the others always run (or say why they are skipped).
CHECK_NAMES = ("broker", "results", "blobs", "store", "ledger", "weights", "precision", "discord")

#: Checks that read local files only may take longer than the network time-out (importing torch alone
#: can take seconds on a cold disk).
LOCAL_CHECK_BUDGET_S = 120.0

DISCORD_USER_AGENT = f"DiscordBot (https://github.com/plipbot/plipbot, {__version__})"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report."""

    name: str
    status: Status
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        """The printed line; credentials in it (a URL in a driver's error, say) are masked."""
        return redact_secrets(f"{self.status} {self.name}: {self.detail}")


def _os_reason(err: BaseException) -> str:
    """A short reason for a connection error ("Connection refused", "timed out", ...)."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        reason = err.reason
        if isinstance(reason, BaseException):
            return _os_reason(reason)
        return str(reason)
    if isinstance(err, TimeoutError) or type(err).__name__ == "TimeoutError":  # redis-py's own, too
        return "timed out"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    redis_style = re.match(r"Error -?\d+ connecting to \S+?\.? (.+)", text)  # redis-py's wording
    if redis_style:
        text = redis_style.group(1)
    return text.rstrip(".")


# ---------------------------------------------------------------------------------------- Redis (broker)


def _ping_redis(url: str, timeout_s: float) -> str:
    """PING a Redis URL; returns the server version. Raises on failure."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )
    try:
        client.ping()
        version = client.info("server").get("redis_version", "?")
    finally:
        client.close()
    return f"Redis {version}"


def _connect_kombu(url: str, timeout_s: float) -> str:
    from kombu import Connection

    with Connection(url, connect_timeout=timeout_s) as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout_s)
        return f"{connection.transport_cls} broker"


def _check_redis_like(name: str, url: str, timeout_s: float, role: str) -> CheckResult:
    shown = redact_url(url)
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            what = _ping_redis(url, timeout_s)
        else:
            what = _connect_kombu(url, timeout_s)
    except Exception as err:
        return CheckResult(name, "FAIL", f"{role} at {shown} is unreachable: {_os_reason(err)}")
    return CheckResult(name, "ok", f"{role} at {shown} answers ({what})")


def check_broker(settings: Settings, timeout_s: float) -> CheckResult:
    if not settings.broker_url:
        return CheckResult("broker", "ok", "embedded (no broker): tasks run inside `plipbot run`")
    return _check_redis_like("broker", settings.broker_url, timeout_s, "broker")


def check_results(settings: Settings, timeout_s: float) -> CheckResult | None:
    url = settings.result_backend_url
    if not url or url == settings.broker_url:
        return None
    return _check_redis_like("results", url, timeout_s, "result backend")


def check_blobs(settings: Settings, timeout_s: float) -> CheckResult | None:
    url = settings.workers.blob_url
    if not url or url in (settings.broker_url, settings.result_backend_url):
        return None
    return _check_redis_like("blobs", url, timeout_s, "blob store")


# -------------------------------------------------------------------------------------------- HTTP


def _http_get(url: str, headers: dict[str, str], timeout_s: float) -> tuple[int, bytes]:
    """GET `url`; returns (status, body) for any HTTP answer, raises OSError/URLError when none came."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 (scheme checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (scheme checked)
            return response.status, response.read(1 << 20)
    except urllib.error.HTTPError as err:
        body = err.read(1 << 16) if err.fp is not None else b""
        return err.code, body


def _json(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------------------------------------- store


def check_store(settings: Settings, timeout_s: float) -> CheckResult:
    if settings.store.url:
        return _check_qdrant_server(settings.store.url.rstrip("/"), settings.store.api_key, timeout_s)
    from store.factory import EMBEDDED_STORE_DIRNAME

    folder = settings.data_dir / EMBEDDED_STORE_DIRNAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-", delete=True) as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as err:
        return CheckResult(
            "store", "FAIL", f"embedded store folder {folder} is not writable: {_os_reason(err)}"
        )
    return CheckResult("store", "ok", f"embedded store (qdrant-edge) in {folder}, writable")


def _check_qdrant_server(url: str, api_key: str | None, timeout_s: float) -> CheckResult:
    headers = {"Accept": "application/json"}
    if api_key:
        headers["api-key"] = api_key
    shown = redact_url(url)
    try:
        status, body = _http_get(f"{url}/collections", headers, timeout_s)
    except Exception as err:
        return CheckResult("store", "FAIL", f"Qdrant server at {shown} is unreachable: {_os_reason(err)}")
    if status in (401, 403):
        fix = (
            "set PLIPBOT_STORE__API_KEY to the server's api key"
            if not api_key
            else "check PLIPBOT_STORE__API_KEY"
        )
        return CheckResult(
            "store", "FAIL", f"Qdrant server at {shown} refused the API key (HTTP {status}): {fix}"
        )
    if status != 200:
        return CheckResult(
            "store", "FAIL", f"Qdrant server at {shown} answered HTTP {status} to GET /collections"
        )
    result = _json(body).get("result")
    collections = result.get("collections", []) if isinstance(result, dict) else []
    version = "?"
    try:
        _status, root = _http_get(f"{url}/", headers, timeout_s)
        version = str(_json(root).get("version", "?"))
    except Exception:  # the version is a nicety; reachability was proven above
        version = "?"
    count = len(collections) if isinstance(collections, list) else 0
    return CheckResult("store", "ok", f"Qdrant {version} at {shown} ({count} collections)")


# ------------------------------------------------------------------------------------------ ledger


def ledger_url(settings: Settings) -> str:
    """The consent ledger URL as `ConsentLedger.from_settings` computes it."""
    return settings.ledger.url or f"sqlite:///{settings.data_dir}/consent.sqlite3"


def check_ledger(settings: Settings, timeout_s: float) -> CheckResult:
    import sqlalchemy as sa
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    url = ledger_url(settings)
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        return CheckResult("ledger", "FAIL", "PLIPBOT_LEDGER__URL is not a valid database URL")
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                return CheckResult(
                    "ledger", "FAIL", f"cannot create the folder of {shown}: {_os_reason(err)}"
                )
        connect_args["timeout"] = timeout_s
    elif backend == "postgresql" and parsed.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args["connect_timeout"] = max(2, math.ceil(timeout_s))  # libpq's minimum is 2 s
    try:
        engine = sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError):
        return CheckResult("ledger", "FAIL", f"{shown} names an unusable database driver ({backend})")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
            version = ".".join(str(part) for part in (connection.dialect.server_version_info or ())[:2])
    except (exc.OperationalError, exc.InterfaceError, exc.DBAPIError) as err:
        reason = _os_reason(err.orig) if err.orig is not None else _os_reason(err)
        return CheckResult("ledger", "FAIL", f"cannot connect to {shown}: {reason}")
    finally:
        engine.dispose()
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(backend, backend)
    return CheckResult("ledger", "ok", f"{name} {version} at {shown}".replace("  ", " "))


# ----------------------------------------------------------------------------------------- weights


def check_weights(settings: Settings, timeout_s: float) -> CheckResult:
    """Are the configured model's weights cached? Never downloads (resolve with offline=True)."""
    from model.registry import REGISTRY
    from model.weights import resolve_weights
    from plipbot.errors import PlipbotError, WeightsMissingError

    name = settings.model.name
    models_dir = settings.models_dir
    try:
        resolved = resolve_weights(name, models_dir, offline=True)
    except WeightsMissingError as err:
        if name not in REGISTRY:
            return CheckResult("weights", "FAIL", err.user_message)
        spec = REGISTRY[name]
        after = (
            "downloads are off, so run it where the Hugging Face Hub is reachable"
            if settings.model.offline
            else "otherwise the first request downloads them"
        )
        return CheckResult(
            "weights",
            "FAIL",
            f"{spec.title} weights are not cached in {models_dir}: "
            f"run `plipbot model fetch {name}` ({after})",
        )
    except PlipbotError as err:
        return CheckResult("weights", "FAIL", err.user_message)
    return CheckResult(
        "weights", "ok", f"{resolved.identity.label} cached in {resolved.safetensors_path.parent}"
    )


# --------------------------------------------------------------------------------------- precision


def check_precision(settings: Settings, timeout_s: float) -> CheckResult:
    """Which precision the encoder will run in, and why (runs the one-time bf16 probe if not cached).

    Needs torch but no weights: `auto` depends on the device and the CPU, not on the model.
    """
    from model.precision import choose_precision, detect_cpu
    from plipbot.errors import PlipbotError

    requested = settings.model.precision
    device = settings.model.device
    try:
        import torch

        cuda = torch.cuda.is_available()
        device_type = "cuda" if device.startswith("cuda") or (device == "auto" and cuda) else "cpu"
        if device_type == "cuda" and not cuda:
            return CheckResult(
                "precision", "FAIL", f"device {device} is configured but no CUDA GPU is visible"
            )
        choice = choose_precision(requested, device_type, cache_dir=settings.cache_dir)
    except PlipbotError as err:
        return CheckResult("precision", "FAIL", err.user_message)
    where = torch.cuda.get_device_name(0) if device_type == "cuda" else detect_cpu().model
    if choice.precision == "fp16" and device_type != "cuda":
        return CheckResult("precision", "FAIL", f"fp16 needs a CUDA GPU; {where} is a CPU: use auto or bf16")
    if choice.precision == "int8" and device_type != "cpu":
        return CheckResult("precision", "FAIL", "int8 runs on CPU only: use auto or fp16 on a GPU")
    return CheckResult("precision", "ok", f"{choice.describe()} on {device_type} ({where})")


# ----------------------------------------------------------------------------------------- discord


def check_discord(settings: Settings, timeout_s: float, *, offline: bool = False) -> CheckResult:
    discord = settings.discord
    if not discord.token:
        return CheckResult(
            "discord", "skip", "no bot token (PLIPBOT_DISCORD__TOKEN); only `plipbot run` needs one"
        )
    if offline:
        return CheckResult("discord", "ok", "token set (not verified: --offline)")
    base = discord.api_base.rstrip("/")
    headers = {"Authorization": f"Bot {discord.token}", "User-Agent": DISCORD_USER_AGENT}
    try:
        status, body = _http_get(f"{base}/users/@me", headers, timeout_s)
    except Exception as err:
        return CheckResult(
            "discord",
            "FAIL",
            f"token set, but the Discord API at {redact_url(base)} is unreachable: {_os_reason(err)}",
        )
    if status == 200:
        user = _json(body)
        return CheckResult(
            "discord", "ok", f"token accepted: bot {user.get('username', '?')} (id {user.get('id', '?')})"
        )
    if status == 401:
        return CheckResult(
            "discord",
            "FAIL",
            "Discord rejected the token (HTTP 401): reset it in the Developer Portal (your app > Bot > "
            "Reset Token) and set PLIPBOT_DISCORD__TOKEN",
        )
    if status == 429:
        return CheckResult(
            "discord", "ok", "token set (not verified: Discord rate-limited the check, HTTP 429)"
        )
    return CheckResult(
        "discord", "FAIL", f"Discord API at {redact_url(base)} answered HTTP {status} to /users/@me"
    )


# ---------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class _Check:
    name: str
    run: Callable[[], CheckResult | None]
    budget_s: float


def _checks(settings: Settings, timeout_s: float, offline: bool) -> list[_Check]:
    network = timeout_s * 2 + 1.0  # a connect and a read, plus a little slack
    return [
        _Check("broker", lambda: check_broker(settings, timeout_s), network),
        _Check("results", lambda: check_results(settings, timeout_s), network),
        _Check("blobs", lambda: check_blobs(settings, timeout_s), network),
        _Check("store", lambda: check_store(settings, timeout_s), network * 2),
        _Check(
            "ledger", lambda: check_ledger(settings, timeout_s), max(network, math.ceil(timeout_s) * 2 + 2)
        ),
        _Check("weights", lambda: check_weights(settings, timeout_s), LOCAL_CHECK_BUDGET_S),
        _Check("precision", lambda: check_precision(settings, timeout_s), LOCAL_CHECK_BUDGET_S),
        _Check("discord", lambda: check_discord(settings, timeout_s, offline=offline), network),
    ]


def run_checks(
    settings: Settings,
    *,
    only: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    timeout_s: float = 3.0,
    offline: bool = False,
) -> list[CheckResult]:
    """Run the selected checks concurrently; results in `CHECK_NAMES` order, unconfigured ones left out."""
    selected = [
        check
        for check in _checks(settings, timeout_s, offline)
        if (only is None or check.name in only) and check.name not in skip
    ]
    results: dict[str, CheckResult | None] = {}
    threads: list[tuple[_Check, threading.Thread]] = []

    def runner(check: _Check) -> None:
        try:
            results[check.name] = check.run()
        except Exception as err:  # a check must report, never crash the report
            results[check.name] = CheckResult(check.name, "FAIL", f"unexpected {type(err).__name__}: {err}")

    started = time.monotonic()
    for check in selected:
        # Daemon threads: a driver stuck past its time-out must not keep the process alive.
        thread = threading.Thread(target=runner, args=(check,), name=f"doctor-{check.name}", daemon=True)
        thread.start()
        threads.append((check, thread))
    ordered: list[CheckResult] = []
    for check, thread in threads:
        thread.join(max(0.0, started + check.budget_s - time.monotonic()))
        if thread.is_alive() or check.name not in results:
            ordered.append(CheckResult(check.name, "FAIL", f"no answer within {check.budget_s:g} s"))
            continue
        result = results[check.name]
        if result is not None:
            ordered.append(result)
    return ordered
