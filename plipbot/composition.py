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

    from bot.feedback import FeedbackStore
    from bot.guild_config import GuildConfigStore
    from ingest.consent_ledger import ConsentLedger
    from ingest.gate import PathologyGate
    from ingest.pipeline import IngestPipeline
    from learning.adapters import ServerAdapters
    from learning.examples import ExamplesStore
    from model.encoder import ClipEncoder
    from model.images import ImageLimits
    from model.weights import ResolvedWeights
    from model.zeroshot import ZeroShotClassifier
    from plipbot.user_data import UserDataStore
    from store.base import CaseStore
    from store.similar import SimilarCaseSearch
    from store.thumbnails import ThumbnailStore
    from workers.blobs import BlobStore
    from workers.client import TaskClient
    from workers.result_erasure import TaskResultErasure


class Container:
    """Lazily built application objects for one process."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._other_stores: dict[str, CaseStore] = {}

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
            weights,
            device=model.device,
            precision=model.precision,
            batch_size=model.batch_size,
            cache_dir=self.settings.cache_dir,
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

        ingest = self.settings.ingest
        return ImageLimits(
            max_bytes=ingest.max_bytes,
            max_pixels=ingest.max_pixels,
            max_concurrent_decodes=ingest.decode_concurrency,
        )

    @cached_property
    def case_store(self) -> CaseStore:
        """The similar-case store for the configured model (its name and revision pick the collection).

        Needs only the weights' identity, not the loaded model, so `consent`/`forget` stay light.
        """
        from store.factory import build_case_store

        return build_case_store(self.settings, self.weights.identity)

    @cached_property
    def thumbnails(self) -> ThumbnailStore:
        """Small re-encoded thumbnails of cases (Discord attachment links expire)."""
        from store.thumbnails import ThumbnailStore

        return ThumbnailStore(self.settings.thumbnails_dir)

    @cached_property
    def consent_ledger(self) -> ConsentLedger:
        """Who consented to what, with its append-only audit."""
        from ingest.consent_ledger import ConsentLedger

        return ConsentLedger.from_settings(self.settings)

    @cached_property
    def guild_config(self) -> GuildConfigStore:
        """Per-server and per-channel bot configuration (labels, switches, sharing, first-post notices)."""
        from bot.guild_config import GuildConfigStore

        return GuildConfigStore.from_settings(self.settings)

    @cached_property
    def feedback(self) -> FeedbackStore:
        """Users' votes on the bot's answers, kept for evaluation."""
        from bot.feedback import FeedbackStore

        return FeedbackStore.from_settings(self.settings)

    @cached_property
    def examples_store(self) -> ExamplesStore:
        """Moderators' confirmed examples (embeddings, never pixels), the learning switch, reviews."""
        from learning.examples import ExamplesStore

        return ExamplesStore.from_settings(self.settings)

    @cached_property
    def server_adapters(self) -> ServerAdapters:
        """Per-server cache adapters fitted from the confirmed examples, kept warm in this process."""
        from learning.adapters import LearningPolicy, ServerAdapters

        learning = self.settings.learning
        policy = LearningPolicy(
            enabled=learning.enabled,
            margin=learning.margin,
            min_examples_per_label=learning.min_examples_per_label,
            max_examples=learning.max_examples,
        )
        return ServerAdapters(self.examples_store, policy)

    @cached_property
    def pathology_gate(self) -> PathologyGate:
        """Zero-shot check that an image is a pathology image before it joins the corpus."""
        from ingest.gate import PathologyGate

        return PathologyGate(self.zero_shot, self.settings.ingest.gate_threshold)

    @cached_property
    def ingest_pipeline(self) -> IngestPipeline:
        """fetch -> validate -> clean -> screen -> dedup -> embed -> upsert, with consent checks."""
        from ingest.pipeline import IngestPipeline

        return IngestPipeline(
            encoder=self.encoder,
            case_store=self.case_store,
            thumbnails=self.thumbnails,
            consent_ledger=self.consent_ledger,
            settings=self.settings.ingest,
            gate=self.pathology_gate,
            guild_shares=self.guild_config.sharing,
        )

    @cached_property
    def similar_search(self) -> SimilarCaseSearch:
        """Image/text similar-case search through the privacy filter."""
        from store.similar import SimilarCaseSearch

        return SimilarCaseSearch(self.encoder, self.case_store, sharing_guilds=self.sharing_guilds_now)

    def sharing_guilds_now(self) -> frozenset[int]:
        """The servers whose shared cases others may see, read at every search (never cached): those
        whose sharing is on, plus the operator's public corpus (`plipbot ingest --scope shared`)."""
        from ingest.bulk import PUBLIC_CORPUS_GUILD

        return self.guild_config.sharing_guilds() | {PUBLIC_CORPUS_GUILD}

    def all_case_stores(self) -> list[CaseStore]:
        """Every case collection in the store (all models ever used), for withdrawal.

        Needs no model weights. Each collection is opened once per process and kept (the embedded
        engine allows one handle per shard); the configured model's store is reused when open.
        """
        from store.catalog import open_all_case_stores

        opened = {
            s.collection: s for s in ([self.__dict__["case_store"]] if "case_store" in self.__dict__ else [])
        }
        opened |= self._other_stores
        for store in open_all_case_stores(self.settings, skip=frozenset(opened)):
            self._other_stores[store.collection] = store
            opened[store.collection] = store
        return list(opened.values())

    @cached_property
    def task_results(self) -> TaskResultErasure | None:
        """Stored task results (Redis) that may show users' cases; None in embedded mode, which
        stores none."""
        url = self.settings.result_backend_url or self.settings.broker_url
        if url is None:
            return None
        import redis

        from workers.result_erasure import TaskResultErasure

        timeout_s = self.settings.workers.connect_timeout_s
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=max(5.0, timeout_s)
        )
        return TaskResultErasure(client, prefix=self.settings.workers.key_prefix)

    def user_data_stores(self) -> list[UserDataStore]:
        """Every store that holds something a user posted, typed or confirmed, for withdrawal and for
        messages deleted on Discord (`plipbot.user_data`). This is the one list: a store of user data
        missing here is a privacy bug, so adding such a store means adding it here.

        - every case collection (all models ever used) with the thumbnails of its cases;
        - feedback votes, first-post notices, confirmed examples (learning);
        - stored task results that show cases (Redis), when workers run behind a broker.

        Not listed, on purpose: the consent ledger (the durable record of consent and of each erasure,
        which must outlive them); bulk-import journals (an operator's file names and outcomes, no
        Discord user); uploaded blobs (content-addressed bytes of a question, no user or message id,
        gone after `workers.blob_ttl_s`).
        """
        from store.erasure import CaseErasure

        stores: list[UserDataStore] = [CaseErasure(s, self.thumbnails) for s in self.all_case_stores()]
        stores += [self.feedback, self.guild_config, self.examples_store]
        if self.task_results is not None:
            stores.append(self.task_results)
        return stores

    def for_new_process(self) -> Container:
        """A fresh Container on the same settings, for a forked worker child: a child must not share
        its parent's connections, threads or accelerator context."""
        return type(self)(self.settings)

    def close(self) -> None:
        """Close everything this Container built that holds locks, threads or connections: the task
        client first (an embedded worker's tasks use the stores), then every store (the embedded case
        store allows one process). Thumbnails are plain files and the blob store's Redis pool closes
        with the process; neither holds a lock."""
        if "task_client" in self.__dict__:
            self.__dict__.pop("task_client").close()
        for store in self._other_stores.values():
            store.close()
        self._other_stores.clear()
        for name in ("case_store", "consent_ledger", "guild_config", "feedback", "examples_store"):
            if name in self.__dict__:
                self.__dict__.pop(name).close()
        task_results = self.__dict__.pop("task_results", None)
        if task_results is not None:
            task_results.close()

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
