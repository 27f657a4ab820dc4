"""Case store: the consented corpus of pathology images behind "similar cases".

`CaseStore` (store.base) is the interface; `store.edge.EdgeCaseStore` (embedded qdrant-edge, the
default) and `store.server.ServerCaseStore` (a Qdrant server) implement it, and
`store.factory.build_case_store` picks one from settings. Thumbnails live beside it in
`store.thumbnails.ThumbnailStore`. The backends are not imported here, so importing the data types
does not load a vector engine.
"""

from store.base import CaseStore
from store.factory import build_case_store
from store.ids import case_point_id, import_point_id
from store.records import (
    CaseHit,
    CasePayload,
    CaseRecord,
    ModelIdentity,
    ModelKey,
    Scope,
    SearchFilter,
    VectorName,
    collection_name,
)
from store.thumbnails import ThumbnailStore

__all__ = [
    "CaseHit",
    "CasePayload",
    "CaseRecord",
    "CaseStore",
    "ModelIdentity",
    "ModelKey",
    "Scope",
    "SearchFilter",
    "ThumbnailStore",
    "VectorName",
    "build_case_store",
    "case_point_id",
    "collection_name",
    "import_point_id",
]
