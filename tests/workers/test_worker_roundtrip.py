"""A real `plipbot worker` process on the real Redis: answers match calling the Container directly.

The model is a random tiny CLIP (`tiny_checkpoint`), NOT PLIP.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from model.images import decode_image
from model.zeroshot import LabelSet
from plipbot.composition import Container
from tests import imagegen
from tests.workers.harness import WorkerConfig, WorkerProcess, plipbot_worker
from workers.client import CeleryTransport, TaskClient
from workers.contracts import EmbedResult, ImageRef, SuggestResult, TaskError

pytestmark = pytest.mark.integration

LABELS = ["adipose tissue", "lymphocytes", "tumor epithelium"]


@pytest.fixture(scope="module")
def config(
    shared_redis: str, key_prefix: str, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> WorkerConfig:
    return WorkerConfig(
        shared_redis,
        f"{key_prefix}rt-{uuid.uuid4().hex[:6]}:",
        tmp_path_factory.mktemp("worker-data"),
        model_name=str(tiny_checkpoint),
        workers={"batch_window_ms": 50},
    )


@pytest.fixture(scope="module")
def worker(config: WorkerConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    process = plipbot_worker(config, log, "--pool=threads", "--concurrency=8").start().wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(config: WorkerConfig, worker: WorkerProcess) -> Iterator[TaskClient]:
    client = Container(config.settings()).task_client
    assert isinstance(client.transport, CeleryTransport)
    yield client
    client.close()


@pytest.fixture(scope="module")
def local(config: WorkerConfig, tmp_path_factory: pytest.TempPathFactory) -> Container:
    """The same model in this process, for the comparisons (own data dir, same checkpoint)."""
    settings = config.settings().model_copy(update={"data_dir": tmp_path_factory.mktemp("local-data")})
    return Container(settings)


def test_suggest_round_trip_matches_the_container(
    client: TaskClient, local: Container, worker: WorkerProcess, tmp_path: Path
) -> None:
    data = imagegen.encode(imagegen.texture(seed=11), "PNG")
    by_blob = client.suggest(client.upload(data), labels=LABELS, top_k=3, timeout_s=60)
    path = tmp_path / "slide.png"
    path.write_bytes(data)
    by_url = client.suggest(ImageRef.from_url(path.as_uri()), labels=LABELS, top_k=3)
    [direct] = local.zero_shot.predict([decode_image(data).image], LabelSet.from_texts(LABELS), top_k=3)
    for result in (by_blob, by_url):
        assert isinstance(result, SuggestResult), result
        assert [s.label for s in result.suggestions] == [s.label for s in direct.suggestions]
        np.testing.assert_allclose(
            [s.probability for s in result.suggestions],
            [s.probability for s in direct.suggestions],
            atol=1e-5,
        )
        assert result.model.label == local.encoder.identity.label
    # the worker says which model it serves, and where
    assert f"serves {local.encoder.identity.label} on cpu" in worker.log()


def test_embed_round_trips_match_the_encoder(client: TaskClient, local: Container) -> None:
    texts = ["an H&E image of tumor", "fat"]
    result = client.embed_texts(texts)
    assert isinstance(result, EmbedResult), result
    np.testing.assert_allclose(result.as_array(), local.encoder.encode_texts(texts), atol=1e-5)
    blobs = [imagegen.encode(imagegen.noise(seed=s), "PNG") for s in range(3)]
    result = client.embed_images([client.upload(b) for b in blobs])
    assert isinstance(result, EmbedResult), result
    expected = local.encoder.encode_images([decode_image(b).image for b in blobs])
    np.testing.assert_allclose(result.as_array(), expected, atol=1e-5)


def test_concurrent_suggests_are_batched_by_the_worker(client: TaskClient) -> None:
    refs = [client.upload(imagegen.encode(imagegen.noise(seed=s), "PNG")) for s in range(8)]
    sizes: list[int] = []
    for _ in range(3):  # delivery timing decides; one burst almost always suffices
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda ref: client.suggest(ref, labels=LABELS), refs))
        assert all(isinstance(r, SuggestResult) for r in results), results
        sizes = [r.stats.batch_size for r in results]
        if max(sizes) > 1:
            break
    assert max(sizes) > 1, sizes


def test_corrupt_or_missing_images_are_task_errors(client: TaskClient) -> None:
    corrupt = client.suggest(client.upload(imagegen.encode(imagegen.solid(), "PNG")[:60]), labels=LABELS)
    assert isinstance(corrupt, TaskError) and corrupt.code == "invalid_image", corrupt
    assert corrupt.task_id  # operators can find it in the worker log
    missing = client.suggest(ImageRef.from_blob("f" * 64), labels=LABELS)
    assert isinstance(missing, TaskError) and missing.code == "blob_missing", missing
    bad = client.transport.call("plipbot.embed_texts", {"texts": "not a list"}, timeout_s=10)
    assert bad["kind"] == "error" and bad["code"] == "invalid_request"
