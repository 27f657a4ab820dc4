"""Withdrawal reaches every store and finishes: a store that fails midway leaves the erasure open, the
sweep completes it, and only then is the user due a notice. Real ledger (SQLite and PostgreSQL), real
bot stores, a real embedded case store with thumbnails."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from bot.feedback import FeedbackStore
from bot.guild_config import GuildConfigStore
from ingest.consent_ledger import AuditAction, ConsentLedger
from ingest.withdrawal import ErasureIncompleteError, forget_messages, forget_user, sweep_erasures
from plipbot.errors import ServiceUnavailableError
from plipbot.user_data import UserDataStore
from store.edge import EdgeCaseStore
from store.erasure import CaseErasure
from store.thumbnails import ThumbnailStore
from tests.store.test_case_store import DIM, GUILD_A, GUILD_B, PLIP, T0, basis, make_case

ALICE, BOB = 555, 777
Stores = tuple[list[UserDataStore], EdgeCaseStore, ThumbnailStore]


class FailsOnce:
    """A real store that raises on its first erasure, as a store does when its server is down."""

    def __init__(self, inner: UserDataStore) -> None:
        self.inner = inner
        self.failures_left = 1

    @property
    def store_name(self) -> str:
        return self.inner.store_name

    def forget_user(self, user_id: int, guild_id: int | None) -> int:
        if self.failures_left:
            self.failures_left -= 1
            raise ServiceUnavailableError("The case store (Qdrant) is unreachable; try again later.")
        return self.inner.forget_user(user_id, guild_id)

    def forget_messages(self, guild_id: int, message_ids: Collection[int]) -> int:
        return self.inner.forget_messages(guild_id, message_ids)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    bot_url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    config, feedback = GuildConfigStore(bot_url), FeedbackStore(bot_url)
    thumbnails = ThumbnailStore(tmp_path / "thumbnails")
    with EdgeCaseStore(tmp_path / "store", PLIP) as case_store:
        case_store.ensure_collection(DIM)
        cases = [
            make_case(1, basis(0), author=ALICE, message=900),
            make_case(2, basis(1), author=ALICE, message=901, guild=GUILD_B),
            make_case(3, basis(2), author=BOB, message=902),
        ]
        case_store.upsert(cases)
        for case in cases:
            thumbnails.put(case.id, Image.new("RGB", (8, 8), "pink"))
        for user in (ALICE, BOB):
            config.first_time_notice(GUILD_A, user)
            feedback.record(7000 + user, GUILD_A, 42, user, "helpful", None, [("a", 0.9)], "tiny")
        yield [CaseErasure(case_store, thumbnails), feedback, config], case_store, thumbnails
    config.close()
    feedback.close()


def test_every_store_forgets_the_user_in_one_server(stores: Stores, consent_ledger: ConsentLedger) -> None:
    user_data, case_store, thumbnails = stores
    consent_ledger.grant(ALICE, GUILD_A, "server", at=T0)
    report = forget_user(consent_ledger=consent_ledger, stores=user_data, user_id=ALICE, guild_id=GUILD_A)
    assert report.removed == {"cases:" + case_store.collection: 1, "feedback": 1, "notices": 1}
    assert report.cases == 1
    assert {r.payload.author_id for r in case_store.get(case_store.ids_where(guild_id=GUILD_A))} == {BOB}
    assert case_store.ids_where(author_id=ALICE) != []  # her case in the other server stays
    assert len(list(thumbnails.ids())) == 2
    assert consent_ledger.current(ALICE, GUILD_A) is None
    assert consent_ledger.pending_erasures() == [] and consent_ledger.unnotified_erasures() == []
    deletion = [e for e in consent_ledger.audit(ALICE) if e.action is AuditAction.DELETE]
    assert deletion[-1].detail is not None and deletion[-1].detail["points_deleted"] == 1


def test_an_interrupted_withdrawal_is_finished_by_the_sweep_and_then_due_a_notice(
    stores: Stores, consent_ledger: ConsentLedger
) -> None:
    user_data, case_store, thumbnails = stores
    flaky = FailsOnce(user_data[0])
    all_stores: list[UserDataStore] = [flaky, *user_data[1:]]
    consent_ledger.grant(ALICE, GUILD_A, "shared", at=T0)

    with pytest.raises(ErasureIncompleteError) as failed:
        forget_user(consent_ledger=consent_ledger, stores=all_stores, user_id=ALICE, guild_id=None)
    assert failed.value.failed == ("cases:" + case_store.collection,)
    # Consent is withdrawn at once, the other stores forgot already, the cases wait for the sweep.
    assert consent_ledger.current(ALICE, GUILD_A) is None
    assert len(case_store.ids_where(author_id=ALICE)) == 2
    [pending] = consent_ledger.pending_erasures()
    assert (pending.user_id, pending.guild_id, pending.attempts) == (ALICE, None, 2)

    [completed] = sweep_erasures(consent_ledger=consent_ledger, stores=all_stores)
    assert completed.cases == 2 and completed.erasure_id == pending.id
    assert case_store.ids_where(author_id=ALICE) == []
    assert len(list(thumbnails.ids())) == 1
    assert consent_ledger.pending_erasures() == []
    [due] = consent_ledger.unnotified_erasures()
    assert due.user_id == ALICE and due.items_erased == 4  # 2 cases, 1 vote, 1 notice
    consent_ledger.mark_notified(due.id)
    assert consent_ledger.unnotified_erasures() == []
    assert sweep_erasures(consent_ledger=consent_ledger, stores=all_stores) == []  # nothing left


def test_withdrawing_twice_while_one_is_pending_reuses_the_open_erasure(
    consent_ledger: ConsentLedger,
) -> None:
    first = consent_ledger.open_erasure(ALICE, GUILD_A)
    again = consent_ledger.open_erasure(ALICE, GUILD_A)
    everywhere = consent_ledger.open_erasure(ALICE, None)
    assert again.id == first.id and again.attempts == 2
    assert everywhere.id != first.id
    assert consent_ledger.complete_erasure(first.id, 3, notified=True)
    assert not consent_ledger.complete_erasure(first.id, 3, notified=True)  # closed once
    assert consent_ledger.unnotified_erasures() == []
    assert [e.id for e in consent_ledger.pending_erasures()] == [everywhere.id]
    assert T0 - timedelta(days=1) < first.requested_at


def test_deleted_messages_leave_nothing_in_any_store(stores: Stores) -> None:
    user_data, case_store, thumbnails = stores
    removed = forget_messages(stores=user_data, guild_id=GUILD_A, message_ids=[900, 902, 7000 + BOB])
    assert removed == {"cases:" + case_store.collection: 2, "feedback": 1, "notices": 0}
    assert [r.payload.message_id for r in case_store.get(case_store.ids_where(author_id=ALICE))] == [901]
    assert len(list(thumbnails.ids())) == 1
    assert forget_messages(stores=user_data, guild_id=GUILD_A, message_ids=[900]) == {
        "cases:" + case_store.collection: 0,
        "feedback": 0,
        "notices": 0,
    }
