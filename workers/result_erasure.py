"""`TaskResultErasure`: Celery results that show a user's cases, as a `UserDataStore`.

Answers and searches return similar cases with their captions, authors and links; until its caller
reads it, such a result sits in Redis (`celery-task-meta-<id>`) where a withdrawal could miss it. The
caller deletes each result once read (`workers.client`), and results nobody read expire after
`workers.result_expires_s`; this erases the ones still there that show the user's cases (by author)
or a deleted message's (by the jump link), so a withdrawal does not wait for the expiry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

RESULT_KEY_PATTERN = "celery-task-meta-*"
_SCAN_COUNT = 500


def _cases_of(stored: bytes) -> Iterator[dict[str, Any]]:
    try:
        meta = json.loads(stored)
    except (ValueError, UnicodeDecodeError):
        return
    result = meta.get("result") if isinstance(meta, dict) else None
    cases = result.get("cases") if isinstance(result, dict) else None
    for case in cases or ():
        if isinstance(case, dict):
            yield case


class TaskResultErasure:
    """Delete stored task results that show a given user's cases or deleted messages' cases."""

    store_name = "task-results"

    def __init__(self, client: redis.Redis, *, prefix: str = "") -> None:
        self._client = client
        self._pattern = prefix + RESULT_KEY_PATTERN

    def close(self) -> None:
        self._client.close()

    def forget_user(self, user_id: int, guild_id: int | None) -> int:
        return self._erase(
            lambda case: case.get("author_id") == user_id and guild_id in (None, case.get("guild_id"))
        )

    def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        endings = tuple(f"/{message_id}" for message_id in message_ids)
        return self._erase(
            lambda case: case.get("guild_id") == guild_id and str(case.get("link") or "").endswith(endings)
        )

    def _erase(self, shows: Callable[[dict[str, Any]], bool]) -> int:
        removed = 0
        for key in self._client.scan_iter(match=self._pattern, count=_SCAN_COUNT):
            stored = self._client.get(key)
            if stored is not None and any(shows(case) for case in _cases_of(bytes(stored))):  # type: ignore[arg-type]
                removed += int(self._client.delete(key))
        return removed
