"""`plipbot worker`: run a Celery worker with the project's settings.

The default pool is `threads`: one process holds one copy of the model (one per GPU), and its task
threads feed the micro-batcher, which is what batching needs. `prefork` runs one model per child
(CPU boxes, or when hard time limits matter: only prefork can kill a stuck task); `solo` is for
debugging. The broker comes from PLIPBOT_BROKER_URL; a missing or unreachable broker is one line.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from plipbot.composition import Container
from plipbot.errors import PlipbotError, ServiceUnavailableError

POOLS = ("threads", "prefork", "solo")
LOG_LEVELS = ("debug", "info", "warning", "error")


def register(sub: Any) -> None:
    """Add `plipbot worker` to the parser."""
    p = sub.add_parser("worker", help="run a task worker (needs PLIPBOT_BROKER_URL)")
    p.add_argument(
        "--queues", help="comma-separated queues or roles (gpu, ingest); default: both configured queues"
    )
    p.add_argument("--concurrency", type=int, help="tasks in flight (threads) or child processes (prefork)")
    p.add_argument("--pool", choices=POOLS, default="threads", help="execution pool (default: threads)")
    p.add_argument("--loglevel", choices=LOG_LEVELS, default="info", help="worker log level (default: info)")
    p.set_defaults(func=run_worker)


def resolve_queues(raw: str | None, configured: dict[str, str]) -> list[str]:
    """Queue names from `--queues`: role names map to their configured queue, names pass as they are."""
    if raw is None:
        return list(dict.fromkeys(configured.values()))
    known = set(configured.values())
    queues = []
    for token in (t.strip() for t in raw.split(",")):
        if not token:
            continue
        name = configured.get(token, token)
        if name not in known:
            raise PlipbotError(f"Unknown queue '{token}'; this deployment has: {', '.join(sorted(known))}.")
        queues.append(name)
    if not queues:
        raise PlipbotError("--queues needs at least one queue.")
    return list(dict.fromkeys(queues))


def _check_broker(app: Any, timeout_s: float) -> None:
    """Fail in one line when the broker cannot be reached (Celery would retry forever, quietly)."""
    from kombu.exceptions import OperationalError

    from plipbot.redaction import redact_secrets, redact_url

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout_s)
    except (OperationalError, OSError) as err:
        where, reason = redact_url(app.conf.broker_url), redact_secrets(str(err).rstrip("."))
        raise ServiceUnavailableError(f"Cannot reach the broker at {where}: {reason}.") from err


def configure_pool(app: Any, pool: str) -> None:
    """Pool-dependent settings: only prefork can cancel running tasks when the broker connection drops
    (their messages are redelivered anyway; a thread cannot be killed, so there it would only log errors).
    """
    app.conf.worker_cancel_long_running_tasks_on_connection_loss = pool == "prefork"


def run_worker(args: argparse.Namespace, container: Container) -> int:
    """Start the worker; returns when it shuts down (SIGTERM/SIGINT: warm shutdown)."""
    from workers.app import queue_names
    from workers.tasks import create_worker_app

    settings = container.settings
    queues = resolve_queues(args.queues, dict(queue_names(settings)))
    concurrency = args.concurrency or (1 if args.pool == "solo" else settings.workers.concurrency)
    if concurrency < 1:
        raise PlipbotError("--concurrency must be at least 1.")
    if settings.discord.token:
        print(
            "plipbot worker: warning: PLIPBOT_DISCORD__TOKEN is set here, but only the bot needs it; "
            "keep it out of workers (docker compose: in .env.bot).",
            file=sys.stderr,
            flush=True,
        )
    app, resources = create_worker_app(container)
    from plipbot.observability import instrument_celery, setup_observability

    observability = setup_observability(settings, component="worker")
    instrument_celery(app, observability.metrics, settings)
    configure_pool(app, args.pool)
    _check_broker(app, settings.workers.connect_timeout_s)
    if args.pool == "prefork":  # each child has its own model: it warms up before it takes tasks
        warm_children_on_start(app, resources)
        model = f"model {settings.model.name} (each child loads it before taking tasks)"
    else:  # warm start: weights, label sets and store are loaded before the first task is consumed
        seconds = resources().warm_up()
        info = container.encoder.info
        model = f"model {info.identity.label} on {info.device}, {info.precision_reason}"
        model += f" (ready in {seconds:.1f} s)"
    print(
        f"plipbot worker: queues {','.join(queues)}; pool {args.pool} x{concurrency}; {model}",
        file=sys.stderr,
        flush=True,
    )
    try:
        return run_celery_worker(app, queues, pool=args.pool, concurrency=concurrency, loglevel=args.loglevel)
    finally:
        container.close()  # flush and release the embedded store and the ledger on a clean stop


def warm_children_on_start(app: Any, resources: Any, timeout_s: float = 300.0) -> None:
    """Prefork: every child process warms up (`WorkerResources.warm_up`) before it takes a task.

    Celery kills a child that does not report within `worker_proc_alive_timeout` (4 s by default),
    shorter than loading a model, so that limit is raised to `timeout_s`.
    """
    from celery.signals import worker_process_init

    app.conf.worker_proc_alive_timeout = max(float(app.conf.worker_proc_alive_timeout or 0), timeout_s)

    def warm(**_: Any) -> None:
        resources().warm_up()

    worker_process_init.connect(warm, weak=False)


def run_celery_worker(
    app: Any, queues: list[str], *, pool: str, concurrency: int, loglevel: str = "info"
) -> int:
    """Run a Celery worker in this process until it stops; its exit status.

    Built with `app.Worker` rather than `app.worker_main`/`app.start`, which drop the status: after
    Celery's "Unrecoverable error" (seen when Redis dies at the wrong moment) the worker stops with
    status 1, and a supervisor (systemd `Restart=`, Kubernetes) must see it to start a fresh one.
    No gossip, mingle or heartbeat: we use no remote control or revocation sync, and they cost a
    second of start-up and broadcast traffic on every worker.
    """
    worker = app.Worker(
        hostname=f"plipbot-{os.getpid()}@{socket.gethostname()}",
        queues=queues,
        pool_cls=pool,
        concurrency=concurrency,
        loglevel=loglevel.upper(),
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        quiet=True,  # no start-up banner: it prints the broker URL, whose password kombu cannot always mask
    )
    worker.start()
    status = int(worker.exitcode or 0)
    print(f"plipbot worker: stopped with status {status}", file=sys.stderr, flush=True)
    return status
