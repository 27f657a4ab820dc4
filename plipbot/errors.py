"""Errors that reach people.

Every failure a user or operator can cause is one of these: each carries a short, complete sentence
(`user_message`) that the CLI prints on one line and the bot sends as a reply. Anything else is a bug
and is logged with its traceback, never shown.
"""

from __future__ import annotations


class PlipbotError(Exception):
    """Base of all expected failures; `str(err)` is the one-line message for people."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class InvalidImageError(PlipbotError):
    """The bytes are not an image we accept (not an image, corrupt, too large, a bomb...)."""


class UnknownModelError(PlipbotError):
    """The model name is neither in the registry nor a usable local path."""


class WeightsMissingError(PlipbotError):
    """The weights are not cached and cannot be downloaded (offline)."""


class LabelSetError(PlipbotError):
    """A label set is empty, has duplicates, unknown preset names, or bad templates."""


class InputFileError(PlipbotError):
    """A path given on the command line does not exist or cannot be read."""


class ServiceUnavailableError(PlipbotError):
    """A dependency (broker, vector store, ledger database) cannot be reached."""


class StoreError(PlipbotError):
    """The case store (vector database or thumbnail folder) refused or failed an operation."""


class ConsentError(PlipbotError):
    """A consent request cannot be honoured as asked (unknown scope, bad ledger location, a lost race)."""


class FetchError(PlipbotError):
    """A link could not be fetched: unreachable, an HTTP error status, or too slow.

    `retryable` is True for failures that may pass on a later try (time-outs, connection errors,
    HTTP 429 and 5xx), so a task queue can retry those and give up on the rest (404, 403...).
    Keyword fields have defaults so the exception survives pickling (Celery ships errors that way).
    """

    def __init__(
        self, user_message: str, *, url: str = "", status_code: int | None = None, retryable: bool = False
    ) -> None:
        super().__init__(user_message)
        self.url = url
        self.status_code = status_code
        self.retryable = retryable


class PermissionDeniedError(PlipbotError):
    """The member may not do this: the bot checks moderator rights itself, not only Discord's command
    permissions (a server can loosen those in its integration settings without the bot knowing)."""


class BotStoreError(PlipbotError):
    """The bot's settings/feedback database cannot be used as configured, or a change lost a race."""


class FeedbackError(PlipbotError):
    """Feedback on an answer is malformed (unknown kind, a missing or over-long corrected label)."""
