"""`build_case_store`: the one place that turns settings into a `CaseStore`.

Called at the composition root (bot start-up, worker start-up, CLI command), never at import time.
Backends are imported here, lazily, so that the embedded default never pays for importing
qdrant-client and a server deployment never loads qdrant-edge.
"""

from __future__ import annotations

from plipbot.settings import Settings
from store.base import CaseStore
from store.records import ModelIdentity

EMBEDDED_STORE_DIRNAME = "store"
"""Folder under `settings.data_dir` that holds the embedded store's shards."""


def build_case_store(settings: Settings, model_key: ModelIdentity) -> CaseStore:
    """The case store for `model_key`: the Qdrant server at `settings.store.url` when set, otherwise
    the embedded store under `settings.data_dir / "store"`.

    The caller still runs `ensure_collection(dim)` once it knows the encoder's output size.
    """
    if settings.store.url:
        from store.server import ServerCaseStore

        return ServerCaseStore.connect(
            settings.store.url,
            model_key,
            api_key=settings.store.api_key,
            timeout_s=settings.store.timeout_s,
        )
    from store.edge import EdgeCaseStore

    return EdgeCaseStore(settings.data_dir / EMBEDDED_STORE_DIRNAME, model_key)
