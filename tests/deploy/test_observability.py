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
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("task failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "ingest p1 duplicate"
    assert (first["level"], first["logger"], first["component"]) == ("info", "plipbot.test", "worker")
    assert (first["point_id"], first["guild_id"]) == ("p1", 42)
    assert first["ts"].endswith("+00:00")
    assert second["exc_type"] == "ValueError" and "boom" in second["exc"]


def test_text_logs_for_people() -> None:
    stream = io.StringIO()
    configure_logging(ObservabilitySettings(log_format="text", log_level="warning"), stream=stream)
    logging.getLogger("plipbot.test").info("not shown")
    logging.getLogger("plipbot.test").warning("shown")
    assert stream.getvalue().rstrip().endswith("WARNING plipbot.test: shown")
    assert "not shown" not in stream.getvalue()


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
