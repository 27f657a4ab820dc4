"""The Celery app's configuration and the client's behaviour with no broker: no worker needed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from plipbot.cli import main as cli_main
from plipbot.cli_worker import resolve_queues
from plipbot.composition import Container
from plipbot.errors import PlipbotError, ServiceUnavailableError
from plipbot.settings import Settings
from tests.workers.harness import REPO, free_port
from workers.app import ROUTES, create_celery_app
from workers.client import CeleryTransport, TaskClient
from workers.contracts import ImageRef
from workers.tasks import TASKS, create_worker_app


def settings(**workers: object) -> Settings:
    return Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0", workers=workers)  # type: ignore[arg-type]


def test_every_task_has_a_route_and_the_reserved_names_are_routed() -> None:
    assert set(TASKS.names()) <= set(ROUTES)
    assert {"plipbot.search", "plipbot.ingest_post", "plipbot.withdraw"} <= set(ROUTES)
    app = create_celery_app(settings(gpu_queue="model-q", ingest_queue="corpus-q"))
    router = app.amqp.router
    assert router.route({}, "plipbot.suggest")["queue"].name == "model-q"
    assert router.route({}, "plipbot.ingest_post")["queue"].name == "corpus-q"
    assert router.route({}, "plipbot.withdraw")["queue"].name == "corpus-q"


def test_delivery_settings() -> None:
    container = Container(settings(soft_time_limit_s=5, time_limit_s=9, prefetch_multiplier=1))
    app, _ = create_worker_app(container)
    conf = app.conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_reject_on_worker_lost is True
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (5, 9)
    assert conf.result_expires == 300
    for spec in TASKS:
        task = app.tasks[spec.name]
        assert task.acks_late is spec.idempotent, spec.name
        assert task.reject_on_worker_lost is spec.idempotent, spec.name


def test_no_broker_is_a_clear_error() -> None:
    with pytest.raises(ServiceUnavailableError, match="PLIPBOT_BROKER_URL"):
        create_celery_app(Settings())


def test_a_dead_broker_fails_fast_with_a_sentence_for_people() -> None:
    app = create_celery_app(settings(connect_timeout_s=0.5, publish_retries=1))
    client = TaskClient(CeleryTransport(app), default_timeout_s=10)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="unreachable") as info:
        client.suggest(ImageRef.from_url("https://cdn.example/a.png"), labels=["a", "b"])
    assert time.monotonic() - started < 5
    client.close()
    assert "\n" not in info.value.user_message


def test_invalid_requests_are_task_errors_before_anything_is_sent() -> None:
    app = create_celery_app(settings())
    client = TaskClient(CeleryTransport(app))
    error = client.suggest(ImageRef.from_url("https://cdn.example/a.png"), labels=["a"], preset="kather")
    assert error.kind == "error" and error.code == "invalid_request"
    assert client.embed_texts([]).kind == "error"


def test_the_client_side_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from plipbot.composition import Container\n"
        "from plipbot.settings import Settings\n"
        "c = Container(Settings(broker_url='redis://127.0.0.1:1/0'))\n"
        "client = c.task_client\n"
        "assert client.upload is not None\n"
        "print('torch' in sys.modules, 'open_clip' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_worker_command_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli_main(["worker"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setenv("PLIPBOT_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("PLIPBOT_WORKERS__CONNECT_TIMEOUT_S", "0.5")
    assert cli_main(["worker", "--pool", "solo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot reach the broker") and err.count("\n") == 1


def test_queue_flags_accept_roles_and_names() -> None:
    configured = {"gpu": "model-q", "ingest": "corpus-q"}
    assert resolve_queues(None, configured) == ["model-q", "corpus-q"]
    assert resolve_queues("gpu", configured) == ["model-q"]
    assert resolve_queues("corpus-q,gpu", configured) == ["corpus-q", "model-q"]
    with pytest.raises(PlipbotError, match="Unknown queue"):
        resolve_queues("cpu", configured)
