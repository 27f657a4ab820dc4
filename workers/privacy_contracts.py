"""Contracts of the privacy tasks: re-scope, forget deleted messages, sweep unfinished erasures.

All run on the ingest queue (they write the corpus) and are idempotent: each reads the current state
(ledger, guild configuration, stores) rather than the change that triggered it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from workers.contracts import Contract, Result

Snowflake = Annotated[int, Field(ge=0)]
MAX_BULK_DELETE = 100
"""Discord's bulk delete removes at most 100 messages at once."""


class RescopeRequest(Contract):
    """Make the stored scope of a server's cases (one author's, when `user_id` is set) follow the
    ledger and the server's sharing switch as they are now."""

    guild_id: Snowflake
    user_id: Snowflake | None = None


class RescopeResult(Result):
    """How many scope stamps were written."""

    kind: Literal["rescope"] = "rescope"
    stamps: int


class ForgetMessagesRequest(Contract):
    """Messages deleted on Discord: erase what every store holds for them."""

    guild_id: Snowflake
    message_ids: list[Snowflake] = Field(min_length=1, max_length=MAX_BULK_DELETE)


class ForgetMessagesResult(Result):
    """Items removed, by store."""

    kind: Literal["forget_messages"] = "forget_messages"
    removed: dict[str, int]


class SweepErasuresRequest(Contract):
    """Retry every unfinished erasure (a withdrawal cut short by a store that was down)."""


class SweepErasuresResult(Result):
    """Erasures completed by this sweep, and those still open."""

    kind: Literal["sweep_erasures"] = "sweep_erasures"
    completed: int
    pending: int
