"""The on-disk image-embedding cache: keyed by file content and model revision, read instead of recomputed."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.embedding_cache import EmbeddingCache, content_hash, embed_image_files
from model.encoder import ClipEncoder
from model.weights import resolve_weights
from plipbot.errors import InvalidImageError
from tests.imagegen import encode, solid, texture


class CountingEncoder:
    """The real tiny encoder, counting how many images reach the model."""

    def __init__(self, inner: ClipEncoder) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.precision = inner.precision
        self.embed_dim = inner.embed_dim
        self.batch_size = 3
        self.encoded = 0

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.encoded += len(images)
        return self.inner.encode_images(images)


@pytest.fixture(scope="module")
def tiny_encoder(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ClipEncoder:
    models = tmp_path_factory.mktemp("models")
    return ClipEncoder.from_weights(
        resolve_weights(str(tiny_checkpoint), models), device="cpu", precision="fp32"
    )


def _files(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.png"
        path.write_bytes(encode(texture((64, 48), seed=i)))
        paths.append(path)
    return paths


def test_second_run_reads_the_cache_and_gives_the_same_vectors(
    tiny_encoder: ClipEncoder, tmp_path: Path
) -> None:
    paths = _files(tmp_path / "ds", 5)
    encoder = CountingEncoder(tiny_encoder)
    cache = EmbeddingCache.for_encoder(tmp_path / "cache", encoder)
    first = embed_image_files(paths, encoder, cache, progress=False)
    assert encoder.encoded == 5
    np.testing.assert_allclose(first, tiny_encoder.encode_images([Image.open(p) for p in paths]), atol=1e-6)
    second = embed_image_files(paths, encoder, cache, progress=False)
    assert encoder.encoded == 5  # nothing reached the model
    np.testing.assert_array_equal(first, second)
    assert len(list(cache.directory.rglob("*.f32"))) == 5


def test_key_is_the_content_not_the_path(tiny_encoder: ClipEncoder, tmp_path: Path) -> None:
    paths = _files(tmp_path / "ds", 3)
    encoder = CountingEncoder(tiny_encoder)
    cache = EmbeddingCache.for_encoder(tmp_path / "cache", encoder)
    embed_image_files(paths, encoder, cache, progress=False)
    copy = tmp_path / "renamed"
    shutil.copytree(tmp_path / "ds", copy)
    (copy / "img0.png").rename(copy / "other-name.png")
    (copy / "img1.png").write_bytes(encode(solid((10, 200, 30), size=(64, 48))))  # edited: a miss
    embed_image_files(sorted(copy.iterdir()), encoder, cache, progress=False)
    assert encoder.encoded == 4


def test_the_cache_is_what_is_read(tiny_encoder: ClipEncoder, tmp_path: Path) -> None:
    """A stored vector is returned as stored: proof the second run reads the cache, not the model."""
    paths = _files(tmp_path / "ds", 1)
    encoder = CountingEncoder(tiny_encoder)
    cache = EmbeddingCache.for_encoder(tmp_path / "cache", encoder)
    marker = np.arange(encoder.embed_dim, dtype=np.float32)
    cache.put(content_hash(paths[0].read_bytes()), marker)
    np.testing.assert_array_equal(embed_image_files(paths, encoder, cache, progress=False)[0], marker)
    assert encoder.encoded == 0


def test_model_revision_and_precision_have_their_own_folders(
    tiny_encoder: ClipEncoder, tmp_path: Path
) -> None:
    from dataclasses import replace

    identity = tiny_encoder.identity
    base = EmbeddingCache(tmp_path, identity, "fp32", 32).directory
    assert EmbeddingCache(tmp_path, identity, "bf16", 32).directory != base
    assert EmbeddingCache(tmp_path, replace(identity, revision="sha256:other"), "fp32", 32).directory != base
    assert EmbeddingCache(tmp_path, identity, "fp32", 32).directory == base


def test_truncated_cache_file_is_recomputed(tiny_encoder: ClipEncoder, tmp_path: Path) -> None:
    paths = _files(tmp_path / "ds", 1)
    encoder = CountingEncoder(tiny_encoder)
    cache = EmbeddingCache.for_encoder(tmp_path / "cache", encoder)
    digest = content_hash(paths[0].read_bytes())
    cache.put(digest, np.zeros(4, dtype=np.float32))  # wrong length
    assert cache.get(digest) is None
    embed_image_files(paths, encoder, cache, progress=False)
    assert encoder.encoded == 1 and cache.get(digest) is not None


def test_a_bad_file_is_named_and_earlier_work_is_kept(tiny_encoder: ClipEncoder, tmp_path: Path) -> None:
    paths = _files(tmp_path / "ds", 4)
    broken = tmp_path / "ds" / "broken.png"
    broken.write_bytes(b"not an image at all")
    encoder = CountingEncoder(tiny_encoder)
    cache = EmbeddingCache.for_encoder(tmp_path / "cache", encoder)
    with pytest.raises(InvalidImageError, match=r"broken\.png"):
        embed_image_files([*paths, broken], encoder, cache, progress=False)
    assert len(list(cache.directory.rglob("*.f32"))) == 3  # one full batch of 3 was stored before the failure


def test_progress_bar_on_stderr_when_asked(
    tiny_encoder: ClipEncoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _files(tmp_path / "ds", 2)
    embed_image_files(paths, CountingEncoder(tiny_encoder), None, description="embedding ds", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "embedding ds" in err and "2/2" in err
    embed_image_files(paths, CountingEncoder(tiny_encoder), None, progress=None)  # stderr is not a terminal
    assert capsys.readouterr().err == ""
