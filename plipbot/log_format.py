"""Log formatting that keeps user content and credentials out of every log line.

A record writes its message and a fixed allowlist of `extra=` fields (`LOG_FIELDS`: ids, counts,
durations, outcomes, task and queue names), never anything else. Celery's task arguments, return
values and exception texts become `<redacted>` (`record_message`). Tracebacks keep their frames and
exception types but not their messages, which may quote a caption or a label, unless the process logs
at the debug level. Every credential is masked by `plipbot.redaction.redact_secrets`, plus the known
secrets a formatter is given (the Discord token).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from plipbot.redaction import REDACTED, redact_secrets

LOG_FIELDS = frozenset(
    {
        "task", "task_id", "task_name", "queue", "kind", "outcome", "code", "state", "status", "model",
        "collection", "store", "component", "guild_id", "channel_id", "message_id", "attachment_id",
        "user_id", "author_id", "actor_id", "answer_id", "point_id", "erasure_id", "count", "items",
        "batch_size", "attempt", "attempts", "retries", "duration_ms", "elapsed_ms", "latency_ms",
        "runtime_s",
    }
)  # fmt: skip
"""The `extra=` fields a log record may write: ids, counts, durations and names we chose. Any other
field (Celery's `data`, with a task's arguments and result) is dropped."""

_MAX_FIELD_CHARS = 200

# Celery logs task events with a dict of values (`celery.app.trace`, `celery.worker.strategy`): these
# keys are safe, `exc` keeps its exception type, and the rest (args, kwargs, return_value,
# traceback) are user content.
_CELERY_SAFE_KEYS = frozenset({"id", "name", "runtime", "description", "hostname", "internal", "eta"})
# A positional argument of a Celery or kombu message passes when it looks like a name, an id, a host
# or a URL; anything else (a message body, an exception's text) is replaced.
_PLAIN_ARG = re.compile(r"[\w.:@/*\[\]+-]{0,200}")
_EXC_NAME = re.compile(r"[A-Za-z_][\w.]*")


def _exception_name(value: object) -> str:
    if isinstance(value, BaseException):
        return type(value).__name__
    found = _EXC_NAME.match(str(value))
    return found.group(0) if found else REDACTED


def _plain_arg(value: object) -> object:
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, BaseException):
        return type(value).__name__
    text = str(value)
    return text if _PLAIN_ARG.fullmatch(text) else REDACTED


def record_message(record: logging.LogRecord) -> str:
    """The record's message with Celery's and kombu's payloads replaced by placeholders.

    Our own log calls pass ids and counts; Celery's pass a task's arguments, result and exception
    text, which are what people typed or posted.
    """
    if not record.name.startswith(("celery", "kombu")) or not record.args:
        return record.getMessage()
    if isinstance(record.args, Mapping):
        safe: object = {
            key: value
            if key in _CELERY_SAFE_KEYS
            else (_exception_name(value) if key == "exc" else REDACTED)
            for key, value in record.args.items()
        }
    else:
        safe = tuple(_plain_arg(arg) for arg in record.args)
    try:
        return str(record.msg) % safe
    except (TypeError, ValueError, KeyError):
        return f"{record.msg!s:.200} ({REDACTED})"


def _exception_chain(exc: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return chain[::-1]


def format_exception(
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None], *, messages: bool
) -> str:
    """A traceback; without `messages`, each exception shows its type but not its text (which may
    quote a caption or a label), so the frames still say where it failed."""
    if messages:
        return "".join(traceback.format_exception(*exc_info)).rstrip()
    parts: list[str] = []
    for exc in _exception_chain(exc_info[1]):
        if parts:
            parts.append("\nThe above exception led to the following one:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(exc.__traceback__))
        parts.append(f"{type(exc).__module__}.{type(exc).__qualname__}: {REDACTED}\n")
    return "".join(parts).rstrip()


class _SafeFormatting:
    """What both formatters share: the secrets to mask and whether exception texts may be shown."""

    def __init__(self, secrets: Iterable[str], exception_messages: bool) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.exception_messages = exception_messages

    def redact(self, text: str) -> str:
        return redact_secrets(text, self.secrets)

    def exception_text(self, record: logging.LogRecord) -> str | None:
        if record.exc_info and record.exc_info[1] is not None:
            exc_info = (type(record.exc_info[1]), record.exc_info[1], record.exc_info[2])
            return self.redact(format_exception(exc_info, messages=self.exception_messages))
        if record.exc_text and self.exception_messages:
            return self.redact(record.exc_text)
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the allowed `extra=` fields
    (`LOG_FIELDS`), and the traceback (frames and types; texts only when `exception_messages`)."""

    def __init__(
        self,
        *,
        component: str | None = None,
        secrets: Iterable[str] = (),
        exception_messages: bool = False,
    ) -> None:
        super().__init__()
        self.component = component
        self._safe = _SafeFormatting(secrets, exception_messages)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._safe.redact(record_message(record)),
        }
        if self.component:
            entry["component"] = self.component
        for key in LOG_FIELDS.intersection(vars(record)):
            if key not in entry:
                entry[key] = self._field(getattr(record, key))
        exception = self._safe.exception_text(record)
        if exception is not None:
            entry["exc_type"] = type(record.exc_info[1]).__name__ if record.exc_info else None
            entry["exc"] = exception
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)

    def _field(self, value: object) -> object:
        if value is None or isinstance(value, bool | int | float):
            return value
        return self._safe.redact(str(value))[:_MAX_FIELD_CHARS]


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` for people, under the same rules as `JsonFormatter` (no extras at all)."""

    def __init__(self, *, secrets: Iterable[str] = (), exception_messages: bool = False) -> None:
        super().__init__(TEXT_FORMAT)
        self._safe = _SafeFormatting(secrets, exception_messages)

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {record_message(record)}"
        exception = self._safe.exception_text(record)
        if exception is not None:
            line = f"{line}\n{exception}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return self._safe.redact(line)
