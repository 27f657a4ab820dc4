"""The contract of every store that holds something a user posted, typed or confirmed.

Withdrawal, message deletion and the bot's removal from a server must reach every such store. The
composition root lists them once (`Container.user_data_stores`); a store that holds user data and is
missing from that list is a privacy bug, so adding a store means implementing this and adding it there.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol, runtime_checkable


@runtime_checkable
class UserDataStore(Protocol):
    """Erasure by user and by Discord message; every method is idempotent and returns items removed."""

    @property
    def store_name(self) -> str:
        """Short name for audit details and the withdrawal sweep's progress ("feedback", "cases:plip")."""
        ...

    def forget_user(self, user_id: int, guild_id: int | None) -> int:
        """Erase every trace of `user_id` in `guild_id`, or in every server when None."""
        ...

    def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        """Erase what these Discord messages (deleted on Discord) left in this store."""
        ...
