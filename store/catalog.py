"""Every case collection in the configured store, one per model revision ever used.

Withdrawal must remove a user's posts from all of them, including collections of models the
deployment no longer runs, and without loading any model; so collections are found by listing the
store, and each name is turned back into the (model, revision) key that produced it.
"""

from __future__ import annotations

import math

from plipbot.settings import Settings
from store.base import CaseStore
from store.factory import EMBEDDED_STORE_DIRNAME
from store.records import ModelKey, collection_name

_PREFIX = "cases__"


def key_from_collection(name: str) -> ModelKey | None:
    """`cases__plip__67ade53d` -> ModelKey("plip", "67ade53d"); None for anything else."""
    parts = name.split("__")
    if len(parts) != 3 or parts[0] + "__" != _PREFIX:
        return None
    key = ModelKey(parts[1], parts[2])
    return key if collection_name(key.name, key.revision) == name else None


def open_all_case_stores(settings: Settings, skip: frozenset[str] = frozenset()) -> list[CaseStore]:
    """Open every case collection of the configured store (embedded folder or Qdrant server), except
    the collections named in `skip` (already open in this process)."""
    if settings.store.url:
        from qdrant_client import QdrantClient

        from store.server import ServerCaseStore, server_errors

        client = QdrantClient(
            url=settings.store.url,
            api_key=settings.store.api_key,
            timeout=max(1, math.ceil(settings.store.timeout_s)),
            check_compatibility=False,
        )
        names = [c.name for c in server_errors(client.get_collections, "list collections").collections]
        keys = [
            k
            for k in map(key_from_collection, names)
            if k is not None and collection_name(k.name, k.revision) not in skip
        ]
        return [ServerCaseStore(client, key, owns_client=False) for key in keys]
    from store.edge import EdgeCaseStore

    root = settings.data_dir / EMBEDDED_STORE_DIRNAME
    if not root.is_dir():
        return []
    names = [p.name for p in sorted(root.iterdir()) if p.is_dir() and p.name not in skip]
    keys = [k for k in map(key_from_collection, names) if k is not None]
    return [EdgeCaseStore(root, key) for key in keys]
