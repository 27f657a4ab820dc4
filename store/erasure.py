"""`CaseErasure`: one case collection and the thumbnails of its cases, as a `UserDataStore`.

A case lives in two places, a point in a collection and a thumbnail file keyed by the point id, and
only the point knows its author and message. So erasure reads the ids from the collection, removes
the thumbnails, then the points: a run cut short between the two finds the same ids again when it is
retried, while the reverse order would leave thumbnails nobody can trace back to their author.
Finally the store purges what its engine only marked as deleted, so nothing stays on disk.
"""

from __future__ import annotations

from collections.abc import Collection

from store.base import CaseStore
from store.thumbnails import ThumbnailStore


class CaseErasure:
    """Forget a user's (or a deleted message's) cases in one collection, thumbnails first."""

    def __init__(self, case_store: CaseStore, thumbnails: ThumbnailStore) -> None:
        self.case_store = case_store
        self.thumbnails = thumbnails

    def __repr__(self) -> str:
        return f"CaseErasure({self.case_store.collection!r})"

    @property
    def store_name(self) -> str:
        return f"cases:{self.case_store.collection}"

    def forget_user(self, user_id: int, guild_id: int | None) -> int:
        return self._erase(self.case_store.ids_where(author_id=user_id, guild_id=guild_id))

    def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        return self._erase(self.case_store.ids_where(guild_id=guild_id, message_ids=message_ids))

    def _erase(self, point_ids: list[str]) -> int:
        if point_ids:
            self.thumbnails.delete(point_ids)
            self.case_store.delete(point_ids)
            self.case_store.purge_deleted()
        return len(point_ids)
