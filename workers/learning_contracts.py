"""Contracts of the learning tasks: keep a confirmed example, and test a label set on a server's examples.

Like every contract, ids and links only, never pixels: the worker fetches the attachment (or reads the
corpus case's vector), embeds it and keeps the embedding, never the image.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from workers.contracts import Contract, ImageRef, Result

Snowflake = Annotated[int, Field(gt=0)]
LabelText = Annotated[str, Field(min_length=1, max_length=200)]


class ConfirmExampleRequest(Contract):
    """A moderator confirmed `label` for one attachment of a post (or approved a member's correction)."""

    image: ImageRef
    guild_id: Snowflake
    channel_id: Snowflake
    message_id: Snowflake
    attachment_id: Snowflake
    poster_id: Snowflake
    confirmer_id: Snowflake
    posted_at: AwareDatetime
    label: LabelText
    labels: list[LabelText] = Field(min_length=1, max_length=200)
    """The channel's label set when it was confirmed (its hash is kept with the example)."""
    templates: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=20)
    origin: Literal["moderator", "feedback"] = "moderator"


class ConfirmExampleResult(Result):
    """Whether the example was kept, why not, and how many the server now has."""

    kind: Literal["confirm_example"] = "confirm_example"
    kept: bool
    reason: str = ""
    via: Literal["consent", "corpus"] | None = None
    """What allowed keeping it: the poster's consent, or the image already being a corpus case."""
    label: str
    label_examples: int = 0
    """Examples of `label` in this server (with this model) after the confirmation."""
    examples: int = 0


class LearningTestRequest(Contract):
    """Evaluate a label set, zero-shot and adapted, on a server's confirmed examples."""

    guild_id: Snowflake
    channel_id: Snowflake | None = None
    labels: list[LabelText] = Field(min_length=1, max_length=200)
    templates: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=20)


class EvalScores(Result):
    """Scores of one way of answering on the examples."""

    weighted_f1: float
    accuracy: float
    confusion: list[list[int]]
    """Rows are the true labels, columns the predicted ones, in `labels` order."""


class LearningTestResult(Result):
    """Zero-shot and adapted (nested leave-one-out) scores on the server's examples."""

    kind: Literal["learning_test"] = "learning_test"
    labels: list[str]
    examples: int
    """Examples whose label is in the set (and that this model embedded)."""
    ignored: int
    """Examples of labels outside the set."""
    counts: list[int]
    zero_shot: EvalScores | None = None
    adapted: EvalScores | None = None
    active: bool = False
    """Whether answers in this channel use the adapter now."""
    reason: str = ""
