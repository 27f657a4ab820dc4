"""Withdrawal: remove every trace of a user's posts, in one server or everywhere.

Order matters. The ledger records the withdrawal first, so any ingest in flight fails its consent
re-check at upsert time (and undoes a point written in that window); then every collection (one per
model) drops the user's points, their thumbnails go, and the deletion is audited with its count.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest.consent_ledger import ConsentLedger
from store.base import CaseStore
from store.thumbnails import ThumbnailStore


def forget_user(
    *,
    consent_ledger: ConsentLedger,
    case_stores: Iterable[CaseStore],
    thumbnails: ThumbnailStore,
    user_id: int,
    guild_id: int | None,
    actor_id: int | None = None,
) -> int:
    """Withdraw consent and delete the user's cases (in `guild_id`, or in every guild when None).

    Returns the number of points deleted across all collections.
    """
    consent_ledger.withdraw(user_id, guild_id, actor_id=actor_id)
    deleted: list[str] = []
    collections: list[str] = []
    for store in case_stores:
        ids = store.delete_where(author_id=user_id, guild_id=guild_id)
        deleted.extend(ids)
        collections.append(store.collection)
    thumbnails.delete(set(deleted))
    consent_ledger.record_deletion(
        user_id, guild_id, len(deleted), actor_id=actor_id, detail={"collections": collections}
    )
    return len(deleted)
