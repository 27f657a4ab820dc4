"""The composition root: the one place that turns settings into clients, stores and the model.

Everything is built lazily and at most once per `Container`, so a command that only lists models does
not load torch weights, and a worker builds its encoder on first use and keeps it warm. Nothing is
created at import time; tests build a Container from their own Settings.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from plipbot.settings import Settings, load_settings

if TYPE_CHECKING:
    from celery import Celery

    from model.encoder import ClipEncoder
    from model.images import ImageLimits
    from model.weights import ResolvedWeights
    from model.zeroshot import ZeroShotClassifier
    from workers.blobs import BlobStore
    from workers.client import TaskClient


class Container:
    """Lazily built application objects for one process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()

    @cached_property
    def weights(self) -> ResolvedWeights:
        """The configured model's converted weights (downloaded on first use when online)."""
        from model.weights import resolve_weights

        return resolve_weights(
            self.settings.model.name, self.settings.models_dir, offline=self.settings.model.offline
        )

    @cached_property
    def encoder(self) -> ClipEncoder:
        """The configured encoder, on the configured device and precision."""
        weights = self.weights  # resolve first: a missing-weights error should not wait for torch imports
        from model.encoder import ClipEncoder

        model = self.settings.model
        return ClipEncoder.from_weights(
            weights, device=model.device, precision=model.precision, batch_size=model.batch_size
        )

    @cached_property
    def zero_shot(self) -> ZeroShotClassifier:
        """Zero-shot classifier over the encoder, with label embeddings cached on disk."""
        from model.zeroshot import ZeroShotClassifier

        zs = self.settings.zeroshot
        return ZeroShotClassifier(
            self.encoder,
            cache_dir=self.settings.cache_dir,
            uncertain_margin=zs.uncertain_margin,
            uncertain_entropy=zs.uncertain_entropy,
        )

    @cached_property
    def image_limits(self) -> ImageLimits:
        """Size and pixel caps applied to every image we decode."""
        from model.images import ImageLimits

        return ImageLimits(
            max_bytes=self.settings.ingest.max_bytes, max_pixels=self.settings.ingest.max_pixels
        )

    @cached_property
    def celery_app(self) -> Celery:
        """The Celery app for sending tasks (no tasks registered); needs `broker_url`."""
        from workers.app import create_celery_app

        return create_celery_app(self.settings)

    @cached_property
    def blob_store(self) -> BlobStore:
        """Uploaded bytes for tasks: Redis next to the broker, or process memory in embedded mode."""
        from workers.blobs import MemoryBlobStore, RedisBlobStore

        workers = self.settings.workers
        url = workers.blob_url or self.settings.result_backend_url or self.settings.broker_url
        if url is None:
            return MemoryBlobStore(ttl_s=workers.blob_ttl_s, max_bytes=self.settings.ingest.max_bytes)
        return RedisBlobStore.from_url(
            url,
            ttl_s=workers.blob_ttl_s,
            max_bytes=self.settings.ingest.max_bytes,
            prefix=workers.key_prefix,
            connect_timeout_s=workers.connect_timeout_s,
        )

    @cached_property
    def task_client(self) -> TaskClient:
        """How the bot runs tasks: through the broker, or on an embedded worker in this process."""
        from workers.client import TaskClient

        return TaskClient.from_container(self)
