"""Structured logs and Prometheus metrics for the long-running processes (`plipbot run`, `plipbot worker`).

A process calls one function at start-up, from its composition root, after settings are loaded:

    from plipbot.observability import setup_observability
    obs = setup_observability(settings, component="worker")   # logging, plus metrics when a port is set

and records what it does through `obs.metrics` (or `plipbot_metrics()`, the same process-wide object):

    with obs.metrics.track_request("suggest") as request:   # count + latency; an exception counts as error
        ...
        request.outcome = "rejected"                          # optional: a finer outcome than ok/error
    obs.metrics.record_ingest(result.outcome)                 # one per image: ingested, duplicate, ...

Workers get request counts and latencies for every task without touching task code through
`instrument_celery(app, metrics)`, which also keeps Celery from replacing our log configuration.

Logs carry no user content and no credentials: `plipbot.log_format` says how.

Nothing is started at import time. Metric objects are built per `PlipbotMetrics(registry)`, so tests use
their own registry; the process-wide instance registers on prometheus_client's default registry (which
also carries the process and Python collectors).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import IO, TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from plipbot import __version__
from plipbot.log_format import JsonFormatter, TextFormatter

if TYPE_CHECKING:
    from plipbot.settings import ObservabilitySettings, Settings

log = logging.getLogger(__name__)

#: Request latency buckets, in seconds: interactive answers are expected well under a second on a GPU,
#: a cold model load or a slow download can take tens of seconds.
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: What can happen to one image offered to the corpus: `ingest.pipeline.Outcome` plus "error" (the task
#: failed before an outcome). Pre-declared so every series exists at 0 (rates work from the first scrape).
INGEST_OUTCOMES = ("ingested", "duplicate", "rejected", "held", "no_consent", "error")

#: kombu's Redis transport keeps a message of priority p>0 in `queue + SEP + step` (kombu.transport.redis).
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (3, 6, 9)

def configure_logging(
    observability: ObservabilitySettings,
    *,
    component: str | None = None,
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Replace the root logger's handlers with one stderr handler in the configured format and level.

    `secrets` are values masked wherever they appear (the Discord token); exception texts are shown
    only at the debug level.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    debug = observability.log_level.lower() == "debug"
    formatter: logging.Formatter
    if observability.log_format == "json":
        formatter = JsonFormatter(component=component, secrets=secrets, exception_messages=debug)
    else:
        formatter = TextFormatter(secrets=secrets, exception_messages=debug)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(observability.log_level.upper())
    return handler


def settings_secrets(settings: Settings) -> tuple[str, ...]:
    """Configured values that must never appear in a log line (URL passwords are masked anyway)."""
    return tuple(secret for secret in (settings.discord.token,) if secret)


# ---------------------------------------------------------------------------------------------- metrics


@dataclass
class RequestTimer:
    """What `track_request` yields: set `outcome` to report something finer than ok/error."""

    kind: str
    outcome: str = "ok"
    started: float = field(default_factory=time.perf_counter)


class PlipbotMetrics:
    """plipbot's metric families on one registry."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.requests = Counter(
            "plipbot_requests",
            "Requests handled (bot commands, mentions and tasks) by kind and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "plipbot_request_duration_seconds",
            "Time from start to answer of a request, by kind.",
            ["kind"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.ingest_outcomes = Counter(
            "plipbot_ingest_outcomes",
            "Images offered to the corpus, by what happened to them.",
            ["outcome"],
            registry=registry,
        )
        for outcome in INGEST_OUTCOMES:
            self.ingest_outcomes.labels(outcome)
        self.build_info = Gauge(
            "plipbot_build_info",
            "Always 1; labels say which plipbot, component and model this process runs.",
            ["version", "component", "model"],
            registry=registry,
        )

    @contextmanager
    def track_request(self, kind: str) -> Iterator[RequestTimer]:
        """Count one request and time it; an exception escaping the block counts as `error`."""
        timer = RequestTimer(kind)
        try:
            yield timer
        except BaseException:
            if timer.outcome == "ok":
                timer.outcome = "error"
            raise
        finally:
            self.observe_request(kind, timer.outcome, time.perf_counter() - timer.started)

    def observe_request(self, kind: str, outcome: str, seconds: float) -> None:
        """Record a request measured elsewhere."""
        self.requests.labels(kind, outcome).inc()
        self.latency.labels(kind).observe(max(0.0, seconds))

    def record_ingest(self, outcome: object) -> None:
        """One image's ingest outcome (an `ingest.pipeline.Outcome` or its string value)."""
        self.ingest_outcomes.labels(str(getattr(outcome, "value", outcome))).inc()

    def set_build_info(self, component: str, model: str) -> None:
        self.build_info.labels(__version__, component, model).set(1)


@cache
def plipbot_metrics() -> PlipbotMetrics:
    """The process-wide metrics, on prometheus_client's default registry (built on first use)."""
    return PlipbotMetrics(REGISTRY)


class QueueDepthCollector(Collector):
    """Messages waiting in each Celery queue, read from Redis (LLEN) at scrape time.

    Counts waiting messages only: those a worker has reserved are not in the list any more. A broker
    that does not answer within `timeout_s` makes `plipbot_broker_up` 0 and leaves the depth out of that
    scrape instead of failing it.
    """

    def __init__(
        self, broker_url: str, queues: Sequence[str], *, key_prefix: str = "", timeout_s: float = 1.0
    ):
        self.broker_url = broker_url
        self.queues = tuple(dict.fromkeys(queues))
        self.key_prefix = key_prefix
        self.timeout_s = timeout_s
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> QueueDepthCollector | None:
        """A collector for the configured queues, or None without a Redis broker."""
        url = settings.broker_url
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            return None
        workers = settings.workers
        return cls(
            url,
            [workers.gpu_queue, workers.ingest_queue],
            key_prefix=workers.key_prefix,
            timeout_s=min(2.0, workers.connect_timeout_s),
        )

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(
                    self.broker_url,
                    socket_connect_timeout=self.timeout_s,
                    socket_timeout=self.timeout_s,
                    retry_on_timeout=False,
                )
            return self._client

    def depths(self) -> dict[str, int]:
        """Waiting messages per queue (all priorities); raises redis errors."""
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        for queue in self.queues:
            base = f"{self.key_prefix}{queue}"
            pipe.llen(base)
            for step in _KOMBU_PRIORITY_STEPS:
                pipe.llen(f"{base}{_KOMBU_PRIORITY_SEP}{step}")
        counts = pipe.execute()
        per_queue = 1 + len(_KOMBU_PRIORITY_STEPS)
        return {
            queue: int(sum(counts[i * per_queue : (i + 1) * per_queue]))
            for i, queue in enumerate(self.queues)
        }

    def describe(self) -> list[Any]:
        # Describing without collecting keeps registration from touching Redis.
        return [
            GaugeMetricFamily("plipbot_queue_depth", "Messages waiting in a task queue.", labels=["queue"]),
            GaugeMetricFamily("plipbot_broker_up", "1 when the broker answered the last scrape."),
        ]

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("plipbot_broker_up", "1 when the broker answered the last scrape.")
        try:
            depths = self.depths()
        except Exception as err:  # a scrape must never fail because the broker is down
            log.warning("queue depth unavailable: %s", err)
            up.add_metric([], 0)
            yield up
            return
        depth = GaugeMetricFamily(
            "plipbot_queue_depth", "Messages waiting in a task queue.", labels=["queue"]
        )
        for queue, count in depths.items():
            depth.add_metric([queue], count)
        up.add_metric([], 1)
        yield depth
        yield up


@dataclass
class Observability:
    """What `setup_observability` set up."""

    metrics: PlipbotMetrics
    metrics_port: int | None = None
    server: Any = None

    def close(self) -> None:
        """Stop the metrics endpoint (tests; a process just exits)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_metrics_server(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY
) -> tuple[Any, int]:
    """Serve `/metrics` from a daemon thread; returns (server, bound port)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_address[1])


def setup_observability(
    settings: Settings,
    *,
    component: str,
    watch_queues: bool | None = None,
    metrics: PlipbotMetrics | None = None,
) -> Observability:
    """Configure logging and, when `observability.metrics_port` is set, serve metrics.

    `watch_queues` adds the queue-depth gauges (default: on for the bot only, so a scaled-out worker pool
    does not multiply the same numbers; any one process reporting them is enough).
    """
    obs_settings = settings.observability
    configure_logging(obs_settings, component=component, secrets=settings_secrets(settings))
    metrics = metrics or plipbot_metrics()
    metrics.set_build_info(component, settings.model.name)
    result = Observability(metrics)
    if obs_settings.metrics_port is None:
        return result
    if watch_queues if watch_queues is not None else component == "bot":
        collector = QueueDepthCollector.from_settings(settings)
        if collector is not None:
            metrics.registry.register(collector)
    result.server, result.metrics_port = start_metrics_server(
        obs_settings.metrics_port, obs_settings.metrics_host, metrics.registry
    )
    log.info("metrics on http://%s:%d/metrics", obs_settings.metrics_host, result.metrics_port)
    return result


def instrument_celery(app: Any, metrics: PlipbotMetrics, settings: Settings | None = None) -> None:
    """Count and time every task `app` runs (kind = task name without `plipbot.`); with `settings`, also
    keep Celery from replacing the log configuration with its own."""
    from celery import signals

    started: dict[str, float] = {}

    def _ours(sender: Any) -> bool:
        return getattr(sender, "app", None) is app

    def on_prerun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        if task_id and _ours(sender):
            started[task_id] = time.perf_counter()

    def on_postrun(
        sender: Any = None, task_id: str | None = None, state: str | None = None, **_: Any
    ) -> None:
        begin = started.pop(task_id, None) if task_id else None
        if begin is None or not _ours(sender):
            return
        kind = str(getattr(sender, "name", "task")).removeprefix("plipbot.")
        outcome = {"SUCCESS": "ok", "FAILURE": "error", "RETRY": "retry"}.get(
            state or "", (state or "").lower()
        )
        metrics.observe_request(kind, outcome or "unknown", time.perf_counter() - begin)

    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    if settings is not None:
        obs_settings = settings.observability

        secrets = settings_secrets(settings)

        def keep_our_logging(**_: Any) -> None:
            configure_logging(obs_settings, component="worker", secrets=secrets)

        # Connecting a receiver to setup_logging is how Celery is told not to configure logging itself.
        signals.setup_logging.connect(keep_our_logging, weak=False)
