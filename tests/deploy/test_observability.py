"""Structured logs and Prometheus metrics (plipbot/observability.py)."""

from __future__ import annotations

import io
import json
import logging
import socket
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry

from ingest.pipeline import Outcome
from plipbot import __version__
from plipbot.log_format import LOG_FIELDS
from plipbot.observability import (
    INGEST_OUTCOMES,
    PlipbotMetrics,
    QueueDepthCollector,
    configure_logging,
    instrument_celery,
    setup_observability,
)
from plipbot.settings import ObservabilitySettings, load_settings

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_settings_section_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().observability == ObservabilitySettings()
    assert ObservabilitySettings().metrics_port is None
    monkeypatch.setenv("PLIPBOT_OBSERVABILITY__LOG_FORMAT", "json")
    monkeypatch.setenv("PLIPBOT_OBSERVABILITY__METRICS_PORT", "9108")
    monkeypatch.setenv("PLIPBOT_OBSERVABILITY__LOG_LEVEL", "debug")
    observability = load_settings().observability
    assert (observability.log_format, observability.metrics_port, observability.log_level) == (
        "json",
        9108,
        "debug",
    )


def test_json_logs_are_one_object_per_line_with_extras_and_tracebacks() -> None:
    stream = io.StringIO()
    configure_logging(
        ObservabilitySettings(log_format="json", log_level="info"), component="worker", stream=stream
    )
    log = logging.getLogger("plipbot.test")
    log.debug("hidden at info")
    log.info("ingest %s %s", "p1", "duplicate", extra={"point_id": "p1", "guild_id": 42})
    detail = "boom " * 2  # built at run time: a traceback's source lines would show a literal
    try:
        raise ValueError(detail)
    except ValueError:
        log.exception("task failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "ingest p1 duplicate"
    assert (first["level"], first["logger"], first["component"]) == ("info", "plipbot.test", "worker")
    assert (first["point_id"], first["guild_id"]) == ("p1", 42)
    assert first["ts"].endswith("+00:00")
    # The traceback says where and what failed, not the exception's text (it may quote a caption).
    assert second["exc_type"] == "ValueError" and "builtins.ValueError: <redacted>" in second["exc"]
    assert "test_observability.py" in second["exc"] and "boom" not in second["exc"]


def test_exception_texts_appear_at_the_debug_level_only() -> None:
    stream = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="json", log_level="debug"), stream=stream)
    try:
        try:
            raise KeyError("inner detail")
        except KeyError as inner:
            raise RuntimeError("outer detail") from inner
    except RuntimeError:
        logging.getLogger("plipbot.test").exception("failed")
    [entry] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "inner detail" in entry["exc"] and "outer detail" in entry["exc"]


def test_chained_exceptions_keep_their_types_not_their_texts() -> None:
    stream = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="text", log_level="info"), stream=stream)
    name, record = " ".join(["Jane", "Roe"]), str(12345678)  # run-time values, as user text would be
    try:
        try:
            raise KeyError(name)
        except KeyError as inner:
            raise RuntimeError(f"MRN {record}") from inner
    except RuntimeError:
        logging.getLogger("plipbot.test").exception("failed")
    text = stream.getvalue()
    assert "builtins.KeyError: <redacted>" in text and "builtins.RuntimeError: <redacted>" in text
    assert "Jane" not in text and "12345678" not in text


def test_only_allowlisted_extra_fields_are_written() -> None:
    stream = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="json", log_level="info"), stream=stream)
    logging.getLogger("plipbot.test").info(
        "posted",
        extra={"guild_id": 7, "outcome": "held", "caption": "Jane Roe", "data": {"args": "x"}, "url": "u"},
    )
    [entry] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (entry["guild_id"], entry["outcome"]) == (7, "held")
    assert not {"caption", "data", "url"} & set(entry)
    assert set(entry) <= LOG_FIELDS | {"ts", "level", "logger", "message"}


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_celery_task_payloads_become_placeholders(log_format: str) -> None:
    """Celery's own log lines (received, succeeded, failed, unregistered) carry a task's arguments,
    result and exception text; what we write keeps the task's name and id only."""
    from celery.app import trace

    stream = io.StringIO()
    configure_logging(ObservabilitySettings(log_format=log_format, log_level="info"), stream=stream)  # type: ignore[arg-type]
    task_id = str(uuid.uuid4())
    payload = "({'text': 'cases like patient Jane Roe MRN 12345678'},)"
    received = {"id": task_id, "name": "plipbot.search", "args": payload, "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(trace.LOG_RECEIVED, received, extra={"data": received})
    success = {
        "id": task_id,
        "name": "plipbot.search",
        "return_value": "{'cases': [{'caption': 'Jane Roe biopsy'}]}",
        "runtime": 0.25,
        "args": payload,
        "kwargs": "{}",
    }
    logging.getLogger("celery.app.trace").info(trace.LOG_SUCCESS, success, extra={"data": success})
    failure = {
        "id": task_id,
        "name": "plipbot.search",
        "exc": "ValueError('Jane Roe')",
        "description": "raised unexpected",
        "traceback": "Traceback ... ValueError: Jane Roe",
        "args": payload,
        "kwargs": "{}",
        "hostname": "w1@host",
        "internal": False,
    }
    logging.getLogger("celery.app.trace").error(trace.LOG_FAILURE, failure, extra={"data": failure})
    logging.getLogger("celery.worker.consumer.consumer").error(
        "Received unregistered task of type %s.\nThe full contents of the message body was:\n%s",
        "plipbot.unknown",
        f"[{payload}, {{}}, {{}}] (120b)",
    )
    out = stream.getvalue()
    assert "Jane" not in out and "12345678" not in out
    assert f"Task plipbot.search[{task_id}] received" in out
    assert f"Task plipbot.search[{task_id}] succeeded in 0.25s: <redacted>" in out
    assert f"Task plipbot.search[{task_id}] raised unexpected: ValueError" in out
    assert "Received unregistered task of type plipbot.unknown" in out


def test_credentials_and_the_discord_token_are_masked() -> None:
    token = "MTA5ODc2NTQzMjEw.GhIjKl.mNoPqRsTuVwXyZ"
    stream = io.StringIO()
    configure_logging(
        ObservabilitySettings(log_format="json", log_level="info"), stream=stream, secrets=[token]
    )
    log = logging.getLogger("plipbot.test")
    log.warning("cannot reach redis://:pa#ss/w?rd@redis:6379/0 (%s)", "refused")
    log.warning("login with %s failed", token)
    out = stream.getvalue()
    assert "pa#ss" not in out and token not in out
    assert "redis://:***@redis:6379/0" in out and "login with *** failed" in out


def test_request_counts_and_latency() -> None:
    metrics = PlipbotMetrics(CollectorRegistry())
    value = metrics.registry.get_sample_value
    with metrics.track_request("suggest"):
        pass
    with metrics.track_request("suggest") as request:
        request.outcome = "rejected"
    with pytest.raises(RuntimeError), metrics.track_request("search"):
        raise RuntimeError("store down")
    assert value("plipbot_requests_total", {"kind": "suggest", "outcome": "ok"}) == 1
    assert value("plipbot_requests_total", {"kind": "suggest", "outcome": "rejected"}) == 1
    assert value("plipbot_requests_total", {"kind": "search", "outcome": "error"}) == 1
    assert value("plipbot_request_duration_seconds_count", {"kind": "suggest"}) == 2
    assert value("plipbot_request_duration_seconds_bucket", {"kind": "search", "le": "0.025"}) == 1


def test_ingest_outcomes_follow_the_pipeline() -> None:
    assert set(INGEST_OUTCOMES) == {o.value for o in Outcome} | {"error"}
    metrics = PlipbotMetrics(CollectorRegistry())
    metrics.record_ingest(Outcome.DUPLICATE)
    metrics.record_ingest("error")
    value = metrics.registry.get_sample_value
    assert value("plipbot_ingest_outcomes_total", {"outcome": "duplicate"}) == 1
    assert value("plipbot_ingest_outcomes_total", {"outcome": "error"}) == 1
    assert value("plipbot_ingest_outcomes_total", {"outcome": "ingested"}) == 0  # present from the start


def test_celery_tasks_are_counted_without_touching_task_code() -> None:
    from celery import Celery

    app = Celery("metrics-test", set_as_current=False)

    # shared=False: a shared task would be added to every Celery app created later in this process.
    @app.task(name="plipbot.metrics_probe", shared=False)
    def probe(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x

    metrics = PlipbotMetrics(CollectorRegistry())
    instrument_celery(app, metrics)
    probe.apply(args=(1,))
    probe.apply(args=(-1,))
    value = metrics.registry.get_sample_value
    assert value("plipbot_requests_total", {"kind": "metrics_probe", "outcome": "ok"}) == 1
    assert value("plipbot_requests_total", {"kind": "metrics_probe", "outcome": "error"}) == 1


@pytest.fixture
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    return client


def test_queue_depth_counts_every_priority_under_the_prefix(redis_client: redis.Redis) -> None:
    prefix = f"plipbot-test-obs-{uuid.uuid4().hex[:8]}:"
    try:
        redis_client.rpush(f"{prefix}gpu", "a", "b")
        redis_client.rpush(f"{prefix}gpu\x06\x163", "c")
        redis_client.rpush(f"{prefix}ingest", "d")
        registry = CollectorRegistry()
        registry.register(QueueDepthCollector(REDIS_URL, ["gpu", "ingest"], key_prefix=prefix))
        assert registry.get_sample_value("plipbot_queue_depth", {"queue": "gpu"}) == 3
        assert registry.get_sample_value("plipbot_queue_depth", {"queue": "ingest"}) == 1
        assert registry.get_sample_value("plipbot_broker_up") == 1
    finally:
        redis_client.delete(f"{prefix}gpu", f"{prefix}gpu\x06\x163", f"{prefix}ingest")


def test_queue_depth_with_the_broker_down_does_not_break_the_scrape() -> None:
    registry = CollectorRegistry()
    registry.register(QueueDepthCollector(f"redis://127.0.0.1:{free_port()}/0", ["gpu"], timeout_s=0.5))
    assert registry.get_sample_value("plipbot_broker_up") == 0
    assert registry.get_sample_value("plipbot_queue_depth", {"queue": "gpu"}) is None


def test_setup_serves_metrics_on_the_configured_port(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("PLIPBOT_OBSERVABILITY__METRICS_PORT", str(port))
    monkeypatch.setenv("PLIPBOT_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    metrics = PlipbotMetrics(CollectorRegistry())
    obs = setup_observability(load_settings(), component="bot", metrics=metrics)
    try:
        assert obs.metrics_port == port
        metrics.record_ingest("ingested")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert 'plipbot_ingest_outcomes_total{outcome="ingested"} 1.0' in text
        assert f'plipbot_build_info{{component="bot",model="plip",version="{__version__}"}} 1.0' in text
        assert "plipbot_broker_up 0.0" in text  # the bot watches the queues; this broker is down
    finally:
        obs.close()


def test_setup_without_a_port_serves_nothing() -> None:
    obs = setup_observability(
        load_settings(), component="worker", metrics=PlipbotMetrics(CollectorRegistry())
    )
    assert obs.metrics_port is None and obs.server is None
