"""Contracts of the corpus tasks: answer (suggest + similar cases), search, ingest a post, withdraw.

Kept beside `workers.contracts` (same base classes, same JSON-only rule) so the model tasks' module
stays readable; the bot builds these requests from Discord ids and attachment links, never pixels.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from workers.contracts import (
    MAX_TEXT_CHARS,
    Contract,
    ImageRef,
    ModelInfo,
    Result,
    SuggestRequest,
    SuggestResult,
)

MAX_CASES = 12
Snowflake = Annotated[int, Field(ge=0)]


class CaseOut(Result):
    """One similar case as the bot shows it (no vectors, no payload internals)."""

    id: str
    score: float
    caption: str
    source: str
    link: str | None
    guild_id: int
    author_id: int | None
    scope: str
    tags: list[str] = Field(default_factory=list)


class SearchRequest(Contract):
    """Nearest cases to an image (`mode` image: looks alike; captions: what similar cases say) or to a
    text (mode text), as seen from `guild_id` (its own cases plus shared ones)."""

    mode: Literal["image", "text", "captions"]
    image: ImageRef | None = None
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    guild_id: Snowflake | None = None
    exclude_message_id: Snowflake | None = None
    k: int = Field(5, ge=1, le=MAX_CASES)

    @model_validator(mode="after")
    def _query_fits_mode(self) -> SearchRequest:
        if self.mode == "text" and (self.text is None or self.image is not None):
            raise ValueError("a text search needs 'text' and no 'image'")
        if self.mode != "text" and (self.image is None or self.text is not None):
            raise ValueError("an image search needs 'image' and no 'text'")
        return self


class SearchResult(Result):
    """Cases, best first."""

    kind: Literal["search"] = "search"
    cases: list[CaseOut]
    model: ModelInfo


class AnswerRequest(SuggestRequest):
    """What a mention with an image asks: suggestions and similar cases from one embedding."""

    guild_id: Snowflake | None = None
    channel_id: Snowflake | None = None
    """Where it was asked: the server's confirmed examples may adapt the answer (`/labels learning`)."""
    exclude_message_id: Snowflake | None = None
    k: int = Field(3, ge=0, le=MAX_CASES)


class AnswerResult(Result):
    """Suggestions plus similar cases."""

    kind: Literal["answer"] = "answer"
    suggest: SuggestResult
    cases: list[CaseOut]


class IngestPostRequest(Contract):
    """One attachment of a Discord post whose author may have consented; the worker re-checks."""

    image: ImageRef
    guild_id: Snowflake
    channel_id: Snowflake
    message_id: Snowflake
    attachment_id: Snowflake
    author_id: Snowflake
    created_at: AwareDatetime
    caption: str = Field("", max_length=4000)
    jump_link: str | None = Field(None, max_length=300)
    filename: str = Field("", max_length=300)


class IngestPostResult(Result):
    """What happened to the post: ingested, duplicate, rejected, held, or no_consent."""

    kind: Literal["ingest"] = "ingest"
    point_id: str
    outcome: str
    reason: str = ""
    duplicate_of: str | None = None


class WithdrawRequest(Contract):
    """Withdraw a user's consent in one server (or everywhere) and delete every trace."""

    user_id: Snowflake
    guild_id: Snowflake | None = None
    actor_id: Snowflake | None = None


class WithdrawResult(Result):
    """How many cases were deleted."""

    kind: Literal["withdraw"] = "withdraw"
    deleted: int
