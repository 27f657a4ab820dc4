"""Withdrawal: erase every trace of a user, in one server or everywhere, and finish even if interrupted.

Order matters. An erasure request is opened in the ledger first, then consent is withdrawn, so any
ingest in flight fails its consent re-check at upsert time (and undoes a point written in that
window). Then every store that holds user data forgets the user: the list comes from one place, the
composition root (`Container.user_data_stores`), so adding a store means adding it there. Only when
every store has succeeded is the request closed and the deletion audited.

A store that fails (Qdrant down midway) does not stop the others; the request stays open, and
`sweep_erasures` (run periodically on the ingest queue) retries it until it completes. The bot tells
the user when an erasure finished after their command had already answered (`unnotified_erasures`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ingest.consent_ledger import ConsentLedger, Erasure
from plipbot.errors import PlipbotError
from plipbot.user_data import UserDataStore

log = logging.getLogger(__name__)


ERASURE_PENDING_MESSAGE = (
    "Consent withdrawn: nothing more will be collected. Some of your data could not be deleted yet "
    "(a store is unavailable); deletion is retried automatically and you will get a direct message "
    "when it is done."
)


class ErasureIncompleteError(PlipbotError):
    """Some stores could not forget the user now; the withdrawal stands and the erasure stays open for
    the sweep. Retryable, and its message says exactly that to the user."""

    retryable = True

    def __init__(self, erasure_id: int = 0, failed: Sequence[str] = ()) -> None:
        super().__init__(ERASURE_PENDING_MESSAGE)
        self.erasure_id = erasure_id
        self.failed = tuple(failed)


@dataclass(frozen=True)
class ErasureReport:
    """What one completed erasure removed, by store name."""

    erasure_id: int
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def cases(self) -> int:
        """Cases removed across every collection (the number people understand)."""
        return sum(count for name, count in self.removed.items() if name.startswith("cases:"))


def _erase(
    consent_ledger: ConsentLedger, stores: Sequence[UserDataStore], erasure: Erasure, *, notified: bool
) -> ErasureReport:
    removed: dict[str, int] = {}
    failed: list[str] = []
    first_error: BaseException | None = None
    for store in stores:
        try:
            removed[store.store_name] = store.forget_user(erasure.user_id, erasure.guild_id)
        except Exception as err:  # the other stores still forget; the sweep retries this one
            kind = type(err).__name__
            log.warning("erasure %s: %s failed (%s); will retry", erasure.id, store.store_name, kind)
            failed.append(store.store_name)
            first_error = first_error or err
    total = sum(removed.values())
    if failed:
        consent_ledger.note_erasure_attempt(erasure.id, total)
        raise ErasureIncompleteError(erasure.id, failed) from first_error
    if consent_ledger.complete_erasure(erasure.id, total, notified=notified):
        report = ErasureReport(erasure.id, removed)
        consent_ledger.record_deletion(
            erasure.user_id,
            erasure.guild_id,
            report.cases,
            actor_id=erasure.actor_id,
            detail={"erasure_id": erasure.id, "removed": removed},
        )
    return ErasureReport(erasure.id, removed)


def forget_user(
    *,
    consent_ledger: ConsentLedger,
    stores: Sequence[UserDataStore],
    user_id: int,
    guild_id: int | None,
    actor_id: int | None = None,
    notified: bool = True,
) -> ErasureReport:
    """Withdraw consent and erase the user's data (in `guild_id`, or in every server when None) from
    every store in `stores`.

    `notified`: whoever asked is told the outcome by the caller (a command's reply). Raises
    `ErasureIncompleteError` when a store failed; the withdrawal itself stands and the sweep finishes
    the erasure (and the bot then tells the user).
    """
    erasure = consent_ledger.open_erasure(user_id, guild_id, actor_id=actor_id)
    consent_ledger.withdraw(user_id, guild_id, actor_id=actor_id)
    return _erase(consent_ledger, stores, erasure, notified=notified)


def sweep_erasures(*, consent_ledger: ConsentLedger, stores: Sequence[UserDataStore]) -> list[ErasureReport]:
    """Retry every unfinished erasure once; returns those completed now (their users are not told yet:
    the bot reads `unnotified_erasures` and DMs them). Failures stay open for the next sweep."""
    completed: list[ErasureReport] = []
    for erasure in consent_ledger.pending_erasures():
        try:
            completed.append(_erase(consent_ledger, stores, erasure, notified=False))
        except ErasureIncompleteError as err:
            log.warning("erasure %s still incomplete (%s)", erasure.id, ", ".join(err.failed))
    return completed


def forget_messages(
    *, stores: Sequence[UserDataStore], guild_id: int, message_ids: Collection[int]
) -> dict[str, int]:
    """Erase what messages deleted on Discord left in every store; returns counts by store.

    Idempotent, so a failure raises and the task is simply retried.
    """
    return {store.store_name: store.forget_messages(guild_id, message_ids) for store in stores}
