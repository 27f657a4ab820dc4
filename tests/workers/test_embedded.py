"""Embedded mode (no broker): the real tasks on the in-process worker, compared with the Container.

The model is a random tiny CLIP (`tiny_checkpoint`), NOT PLIP: these tests check plumbing (the same
numbers come back through the task path as from calling the model directly), not accuracy.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from model.images import decode_image
from model.presets import get_preset
from model.zeroshot import LabelSet
from plipbot.composition import Container
from plipbot.settings import Settings
from tests import imagegen
from tests.workers.probes import PROBES, ProbeResult, SleepRequest
from workers.contracts import EmbedResult, ImageRef, SuggestResult, TaskError
from workers.embedded import EmbeddedTransport, EmbeddedWorker
from workers.runtime import merged
from workers.tasks import TASKS

LABELS = ["adipose tissue", "lymphocytes", "tumor epithelium"]


@pytest.fixture(scope="module")
def container(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Container:
    data_dir = tmp_path_factory.mktemp("embedded-data")
    settings = Settings(
        data_dir=data_dir,
        model={"name": str(tiny_checkpoint)},  # type: ignore[arg-type]
        workers={"allow_file_urls": True, "embedded_threads": 8, "batch_window_ms": 50},  # type: ignore[arg-type]
    )
    return Container(settings)


@pytest.fixture(scope="module")
def client(container: Container) -> Iterator:
    client = container.task_client
    assert isinstance(client.transport, EmbeddedTransport)
    yield client
    client.close()


@pytest.fixture(scope="module")
def png_bytes() -> bytes:
    return imagegen.encode(imagegen.texture(seed=3), "PNG")


def probabilities(result: SuggestResult) -> dict[str, float]:
    return {s.label: s.probability for s in result.suggestions}


def test_suggest_round_trip_matches_the_container(client, container: Container, png_bytes: bytes) -> None:
    result = client.suggest(client.upload(png_bytes), labels=LABELS, top_k=3)
    assert isinstance(result, SuggestResult), result
    image = decode_image(png_bytes, container.image_limits).image
    [direct] = container.zero_shot.predict([image], LabelSet.from_texts(LABELS), top_k=3)
    assert [s.label for s in result.suggestions] == [s.label for s in direct.suggestions]
    np.testing.assert_allclose(
        [s.probability for s in result.suggestions], [s.probability for s in direct.suggestions], atol=1e-6
    )
    assert result.uncertain == direct.uncertain
    assert result.model.label == container.encoder.identity.label
    assert result.model.name == "local"  # a random checkpoint is never presented as PLIP


def test_preset_and_templates_through_a_file_url(client, container: Container, tmp_path: Path) -> None:
    path = tmp_path / "slide.jpg"
    imagegen.texture(seed=5).save(path, format="JPEG")
    templates = ["a micrograph of {}."]
    result = client.suggest(ImageRef.from_url(path.as_uri()), preset="kather", templates=templates, top_k=2)
    assert isinstance(result, SuggestResult), result
    label_set = get_preset("kather").with_templates(templates)
    [direct] = container.zero_shot.predict([decode_image(path.read_bytes()).image], label_set, top_k=2)
    assert result.label_set == "kather" and len(result.suggestions) == 2
    np.testing.assert_allclose(
        list(probabilities(result).values()), [s.probability for s in direct.suggestions], atol=1e-6
    )


def test_embeddings_match_the_encoder(client, container: Container, png_bytes: bytes) -> None:
    texts = ["an H&E image of tumor", "lymph node"]
    result = client.embed_texts(texts)
    assert isinstance(result, EmbedResult), result
    np.testing.assert_allclose(result.as_array(), container.encoder.encode_texts(texts), atol=1e-6)

    other = imagegen.encode(imagegen.noise(seed=1), "PNG")
    result = client.embed_images([client.upload(png_bytes), client.upload(other)])
    assert isinstance(result, EmbedResult), result
    images = [decode_image(data).image for data in (png_bytes, other)]
    np.testing.assert_allclose(result.as_array(), container.encoder.encode_images(images), atol=1e-5)
    assert result.dim == container.encoder.embed_dim


def test_concurrent_requests_share_a_forward_pass(client, container: Container) -> None:
    refs = [client.upload(imagegen.encode(imagegen.noise(seed=s), "PNG")) for s in range(8)]
    sizes: list[int] = []
    for _ in range(3):  # thread scheduling decides; one burst almost always suffices
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda ref: client.suggest(ref, labels=LABELS), refs))
        assert all(isinstance(r, SuggestResult) for r in results), results
        sizes = [r.stats.batch_size for r in results]
        if max(sizes) > 1:
            break
    assert max(sizes) > 1, sizes
    # and a batched answer is the same answer
    image = decode_image(imagegen.encode(imagegen.noise(seed=0), "PNG")).image
    [direct] = container.zero_shot.predict([image], LabelSet.from_texts(LABELS), top_k=3)
    np.testing.assert_allclose(
        [s.probability for s in results[0].suggestions],
        [s.probability for s in direct.suggestions],
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("make_ref", "kwargs", "code"),
    [
        (lambda c: c.upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 64), {"labels": LABELS}, "invalid_image"),
        (lambda c: c.upload(b"%PDF-1.7 not an image"), {"labels": LABELS}, "invalid_image"),
        (lambda c: ImageRef.from_blob("0" * 64), {"labels": LABELS}, "blob_missing"),
        (lambda c: ImageRef.from_url("file:///nonexistent/slide.png"), {"labels": LABELS}, "fetch_failed"),
        (lambda c: ImageRef.from_blob("0" * 64), {"preset": "no-such-preset"}, "label_set"),
        (lambda c: ImageRef.from_blob("0" * 64), {"labels": ["tumor", "Tumor"]}, "label_set"),
        (lambda c: ImageRef.from_blob("0" * 64), {"labels": ["a"], "templates": ["no slot"]}, "label_set"),
    ],
)
def test_expected_failures_are_task_errors(client, make_ref, kwargs, code: str) -> None:
    result = client.suggest(make_ref(client), **kwargs)
    assert isinstance(result, TaskError), result
    assert result.code == code
    assert result.message and "\n" not in result.message


def test_malformed_payloads_and_unknown_tasks_are_task_errors(client) -> None:
    transport = client.transport
    answer = transport.call("plipbot.suggest", {"image": {"url": "gopher://x"}}, timeout_s=5)
    assert answer["kind"] == "error" and answer["code"] == "invalid_request"
    answer = transport.call("plipbot.no_such_task", {}, timeout_s=5)
    assert answer["kind"] == "error" and answer["code"] == "invalid_request"


class _OnePng(http.server.BaseHTTPRequestHandler):
    body = imagegen.encode(imagegen.solid(), "PNG")

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OnePng)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slide.png"
    server.shutdown()


def test_links_to_private_addresses_are_refused_unless_allowed(
    client, container: Container, http_url: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    refused = client.suggest(ImageRef.from_url(http_url), labels=LABELS)
    assert isinstance(refused, TaskError) and refused.code == "fetch_failed", refused

    settings = container.settings.model_copy(update={"data_dir": tmp_path})
    settings.workers = settings.workers.model_copy(update={"allow_private_urls": True})
    trusting = Container(settings)
    trusting.__dict__["encoder"] = container.encoder  # share the loaded model, not a second copy
    worker = EmbeddedWorker(trusting, threads=1)
    try:
        answer = EmbeddedTransport(worker).call(
            "plipbot.suggest", {"image": {"url": http_url}, "labels": LABELS}, timeout_s=30
        )
    finally:
        worker.close()
    assert answer["kind"] == "suggest", answer


def test_time_limits_and_crashes_in_embedded_mode(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers={"soft_time_limit_s": 0.3})  # type: ignore[arg-type]
    worker = EmbeddedWorker(Container(settings), specs=merged(TASKS, PROBES), threads=2)
    transport = EmbeddedTransport(worker)
    try:
        answer = transport.call("plipbot.test.sleep", SleepRequest(seconds=5).model_dump(), timeout_s=5)
        assert answer["kind"] == "error" and answer["code"] == "timeout", answer
        answer = transport.call("plipbot.test.crash", {"message": "kaboom"}, timeout_s=5)
        assert answer["kind"] == "error" and answer["code"] == "internal", answer
        assert "kaboom" not in answer["message"]  # tracebacks go to the log, not to people
    finally:
        worker.close()


def test_a_caller_that_stops_waiting_gets_a_timeout_error(tmp_path: Path) -> None:
    from workers.client import TaskClient

    settings = Settings(data_dir=tmp_path)
    worker = EmbeddedWorker(Container(settings), specs=merged(TASKS, PROBES), threads=1)
    client = TaskClient(EmbeddedTransport(worker))
    try:
        result = client.call("plipbot.test.sleep", SleepRequest(seconds=1.0), ProbeResult, timeout_s=0.2)
    finally:
        client.close()
    assert isinstance(result, TaskError) and result.code == "timeout" and result.retryable
