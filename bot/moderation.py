"""Who may configure the bot, how often people may ask it, and how label lists are typed in.

The bot checks moderator rights itself: Discord's per-command permissions can be loosened by any server
admin in the integration settings, and the bot would not know. Cooldowns keep one user or one busy
channel from monopolising the model. All of this is plain logic (no discord import), so the cogs pass in
plain values (`member.guild_permissions.value`, role ids) and the rules are tested without mocks.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable

from plipbot.errors import PermissionDeniedError

ADMINISTRATOR = 0x8
"""Discord permission bit: every permission, Manage Server included."""
MANAGE_GUILD = 0x20
"""Discord permission bit "Manage Server"."""

MODERATOR_ONLY_MESSAGE = "Only moderators (Manage Server or the configured role) can change this."


def can_moderate(
    member_permissions: int,
    member_role_ids: Iterable[int],
    guild_owner: bool,
    configured_role_id: int | None,
) -> bool:
    """Whether a member may change the bot's settings in a server.

    `member_permissions` are the member's server-wide permissions (`member.guild_permissions.value`),
    not a channel's: a channel overwrite must not make someone a moderator of the whole server.
    """
    if guild_owner or member_permissions & (ADMINISTRATOR | MANAGE_GUILD):
        return True
    return configured_role_id is not None and configured_role_id in set(member_role_ids)


def require_moderator(
    member_permissions: int,
    member_role_ids: Iterable[int],
    guild_owner: bool,
    configured_role_id: int | None,
) -> None:
    """Raise PermissionDeniedError unless `can_moderate` allows the member."""
    if not can_moderate(member_permissions, member_role_ids, guild_owner, configured_role_id):
        raise PermissionDeniedError(MODERATOR_ONLY_MESSAGE)


class Cooldowns:
    """Per-user and per-channel rate limits for requests to the model, in memory and thread-safe.

    A user's cooldown is global (one person's requests cost the same GPU in every server); a channel's is
    its own. A refused request does not restart either cooldown, so waiting the returned time always
    suffices. Per-process: several bot shards each keep their own, which is fine for a courtesy limit.
    """

    _PRUNE_EVERY = 1024
    """Uses between sweeps of expired entries, so memory stays bounded by the active users."""

    def __init__(
        self, per_user_s: float, per_channel_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        for name, value in (("per_user_s", per_user_s), ("per_channel_s", per_channel_s)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self._per_user_s = float(per_user_s)
        self._per_channel_s = float(per_channel_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._user_ready_at: dict[int, float] = {}
        self._channel_ready_at: dict[tuple[int, int], float] = {}
        self._uses = 0

    def check(self, guild_id: int, channel_id: int, user_id: int) -> float | None:
        """Seconds to wait before this request is allowed, or None: allowed, and the use is recorded."""
        channel = (guild_id, channel_id)
        with self._lock:
            now = self._clock()
            wait = max(
                self._user_ready_at.get(user_id, now) - now,
                self._channel_ready_at.get(channel, now) - now,
            )
            if wait > 0:
                return wait
            if self._per_user_s > 0:
                self._user_ready_at[user_id] = now + self._per_user_s
            if self._per_channel_s > 0:
                self._channel_ready_at[channel] = now + self._per_channel_s
            self._uses += 1
            if self._uses % self._PRUNE_EVERY == 0:
                self._prune(now)
            return None

    def _prune(self, now: float) -> None:
        """Forget cooldowns that have run out (called with the lock held)."""
        self._user_ready_at = {key: at for key, at in self._user_ready_at.items() if at > now}
        self._channel_ready_at = {key: at for key, at in self._channel_ready_at.items() if at > now}

    def __len__(self) -> int:
        """Entries held (running or not yet pruned); lets tests check memory stays bounded."""
        with self._lock:
            return len(self._user_ready_at) + len(self._channel_ready_at)


_SEPARATORS = re.compile(r"[,;\r\n]+")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»"}


def _unquote(text: str) -> str:
    """Drop one pair of surrounding quotes: people paste `"adipose", "mucus"`."""
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        return text[1:-1].strip()
    return text


def parse_label_list(text: str) -> list[str]:
    """Labels typed in a slash command or modal: separated by commas, semicolons or new lines.

    Each is trimmed, unquoted and has inner runs of white space collapsed to one space; empty entries are
    dropped and the order is kept. Duplicates are kept too: `LabelSet` reports them by name.
    """
    labels = []
    for part in _SEPARATORS.split(text):
        label = " ".join(_unquote(part.strip()).split())
        if label:
            labels.append(label)
    return labels
