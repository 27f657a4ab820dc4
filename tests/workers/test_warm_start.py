"""Warm start: `plipbot run` (embedded) and `plipbot worker` load everything before they report ready.

The model is a random tiny CLIP (`tiny_checkpoint`), NOT PLIP. Speed is measured by
bench/startup_bench.py; these tests check what is loaded, and that warming up stores nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from model.presets import get_preset, preset_names
from plipbot.composition import Container
from plipbot.settings import Settings
from tests.workers.harness import WorkerConfig, plipbot_worker


def test_embedded_warm_up_loads_model_label_sets_and_store_and_stores_nothing(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", model={"name": str(tiny_checkpoint)})  # type: ignore[arg-type]
    container = Container(settings)
    try:
        transport = container.task_client.transport
        seconds = transport.warm_up()  # type: ignore[attr-defined]
        assert seconds > 0
        assert {"encoder", "zero_shot", "case_store"} <= set(container.__dict__)  # built, not lazy any more
        zero_shot = container.zero_shot
        for name in preset_names():  # every built-in label set is embedded and cached on disk
            key = zero_shot.cache_key(get_preset(name))
            assert key in zero_shot._memory, name
            assert (container.settings.cache_dir / "labels" / f"{key}.npy").exists(), name
        resources = transport.worker.resources()  # type: ignore[attr-defined]
        assert "encoder_ready" in resources.__dict__ and "image_batcher" in resources.__dict__
        assert container.case_store.count(None) == 0  # the warm-up answer searched, it stored nothing
    finally:
        container.task_client.close()
        container.close()


@pytest.mark.integration
def test_plipbot_worker_loads_the_model_before_celery_reports_ready(
    shared_redis: str, key_prefix: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    prefix = f"{key_prefix}warm-{uuid.uuid4().hex[:6]}:"
    config = WorkerConfig(shared_redis, prefix, tmp_path / "data", model_name=str(tiny_checkpoint))
    worker = plipbot_worker(config, tmp_path / "worker.log", "--pool=threads", "--concurrency=2").start()
    try:
        log = worker.wait_ready().log()
    finally:
        worker.stop()
    loaded = log.index("encoder ready:")
    announced = log.index("(ready in ")
    assert loaded < announced < log.index(" ready."), log[-3000:]
    assert "precision" in log[loaded : announced + 200]
