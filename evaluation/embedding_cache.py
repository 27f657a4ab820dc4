"""Image embeddings cached on disk per (model, revision, precision, file content), so reruns are fast.

The key is the SHA-256 of the file's bytes, not its path: a renamed or copied dataset hits the cache and
an edited image misses it. The model part of the key is its name, weights revision and the precision it
ran at, so a new checkpoint or a bf16 run never reads fp32 vectors. Each vector is one small file of raw
float32, written atomically; the cache is derived data and can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from model.identity import ModelIdentity
from model.images import ImageLimits, decode_image, read_file_capped
from plipbot.errors import PlipbotError


class ImageEncoder(Protocol):
    """What embedding needs from an encoder (ClipEncoder satisfies it)."""

    identity: ModelIdentity
    precision: str
    embed_dim: int
    batch_size: int

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(data).hexdigest()


class EmbeddingCache:
    """One folder of float32 vectors for one model revision at one precision."""

    def __init__(self, root: Path, identity: ModelIdentity, precision: str, embed_dim: int) -> None:
        model_key = hashlib.sha256(
            f"{identity.name}\n{identity.source}\n{identity.revision}\n{precision}".encode()
        ).hexdigest()[:12]
        self.directory = root / "image-embeddings" / f"{identity.key}-{precision}-{model_key}"
        self.embed_dim = embed_dim

    @classmethod
    def for_encoder(cls, root: Path, encoder: ImageEncoder) -> EmbeddingCache:
        """The cache of this encoder's model, revision and precision."""
        return cls(root, encoder.identity, encoder.precision, encoder.embed_dim)

    def _path(self, digest: str) -> Path:
        return self.directory / digest[:2] / f"{digest}.f32"

    def get(self, digest: str) -> np.ndarray | None:
        """The cached vector, or None (also for a truncated or foreign file, which is then recomputed)."""
        try:
            raw = self._path(digest).read_bytes()
        except OSError:
            return None
        if len(raw) != 4 * self.embed_dim:
            return None
        return np.frombuffer(raw, dtype=np.float32)

    def put(self, digest: str, vector: np.ndarray) -> None:
        """Store one vector; a concurrent writer of the same key writes the same bytes."""
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(np.ascontiguousarray(vector, dtype=np.float32).tobytes())
        tmp.replace(path)


@contextmanager
def progress_bar(total: int, description: str, enabled: bool | None = None) -> Iterator[object]:
    """A tqdm bar on stderr; by default only when stderr is a terminal (logs stay clean)."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    with tqdm(total=total, desc=description, unit="img", disable=not show, file=sys.stderr) as bar:
        yield bar


def embed_image_files(
    paths: Sequence[Path],
    encoder: ImageEncoder,
    cache: EmbeddingCache | None,
    limits: ImageLimits | None = None,
    *,
    description: str = "embedding",
    progress: bool | None = None,
) -> np.ndarray:
    """(n, d) L2-normalised embeddings of image files, in order; cached ones are read, the rest encoded.

    Files are streamed: at most one batch of decoded images is held at a time. A file that cannot be
    read or decoded stops the run with an error naming it; everything embedded before it is cached.
    """
    limits = limits or ImageLimits()
    out = np.empty((len(paths), encoder.embed_dim), dtype=np.float32)
    pending: list[tuple[int, str, Image.Image]] = []

    def flush() -> None:
        vectors = encoder.encode_images([image for _, _, image in pending])
        for (index, digest, _), vector in zip(pending, vectors, strict=True):
            out[index] = vector
            if cache is not None:
                cache.put(digest, vector)
        bar.update(len(pending))  # type: ignore[attr-defined]
        pending.clear()

    with progress_bar(len(paths), description, progress) as bar:
        for index, path in enumerate(paths):
            try:
                data = read_file_capped(path, limits.max_bytes)
                digest = content_hash(data)
                cached = cache.get(digest) if cache is not None else None
                if cached is not None:
                    out[index] = cached
                    bar.update(1)  # type: ignore[attr-defined]
                    continue
                pending.append((index, digest, decode_image(data, limits).image))
            except PlipbotError as err:
                raise type(err)(f"{path}: {err.user_message}") from err
            if len(pending) >= encoder.batch_size:
                flush()
        if pending:
            flush()
    return out
