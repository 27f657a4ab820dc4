"""Re-scoping from the current state: sharing off/on, a user narrowing, on the embedded store and a
real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.consent_ledger import ConsentLedger
from ingest.scoping import rescope_guild, rescope_user
from store.base import CaseStore
from store.edge import EdgeCaseStore
from store.records import SearchFilter
from tests.store.test_case_store import DIM, GUILD_A, PLIP, T0, basis, make_case

ALICE, BOB = 555, 777


@pytest.fixture
def case_store(tmp_path: Path) -> Iterator[CaseStore]:
    with EdgeCaseStore(tmp_path / "store", PLIP) as store:
        store.ensure_collection(DIM)
        yield store


def stores_and_ledger(case_store: CaseStore, ledger: ConsentLedger) -> dict[str, Any]:
    return {"case_stores": [case_store], "consent_ledger": ledger}


def scopes(store: CaseStore, ids: list[str]) -> list[str]:
    by_id = {record.id: record.payload.scope for record in store.get(ids)}
    return [by_id[i] for i in ids]


def test_sharing_off_then_on_follows_the_ledger(case_store: CaseStore, consent_ledger: ConsentLedger) -> None:
    consent_ledger.grant(ALICE, GUILD_A, "shared", at=T0)
    consent_ledger.grant(BOB, GUILD_A, "server", at=T0)
    early = make_case(1, basis(0), author=ALICE, scope="shared", created_at=T0 + timedelta(minutes=1))
    bobs = make_case(2, basis(1), author=BOB, scope="server", created_at=T0 + timedelta(minutes=1))
    case_store.upsert([early, bobs])
    ids = [early.id, bobs.id]

    rescope_guild(**stores_and_ledger(case_store, consent_ledger), guild_id=GUILD_A, guild_shares=False)
    assert scopes(case_store, ids) == ["server", "server"]
    assert case_store.count(SearchFilter(guild_id=None, sharing_guilds=frozenset({GUILD_A}))) == 0

    # Sharing back on: a consenting user's cases (posted under their shared scope) are shared again.
    for _ in range(2):  # idempotent
        rescope_guild(**stores_and_ledger(case_store, consent_ledger), guild_id=GUILD_A, guild_shares=True)
        assert scopes(case_store, ids) == ["shared", "server"]


def test_a_narrowed_scope_unshares_and_a_rewidened_one_covers_only_later_posts(
    case_store: CaseStore, consent_ledger: ConsentLedger
) -> None:
    consent_ledger.grant(ALICE, GUILD_A, "shared", at=T0)
    old = make_case(1, basis(0), author=ALICE, scope="shared", created_at=T0 + timedelta(minutes=1))
    case_store.upsert([old])
    consent_ledger.grant(ALICE, GUILD_A, "server", at=T0 + timedelta(minutes=2))
    rescope_user(
        **stores_and_ledger(case_store, consent_ledger), user_id=ALICE, guild_id=GUILD_A, guild_shares=True
    )
    assert scopes(case_store, [old.id]) == ["server"]
    consent_ledger.grant(ALICE, GUILD_A, "shared", at=T0 + timedelta(minutes=3))
    new = make_case(2, basis(1), author=ALICE, scope="shared", created_at=T0 + timedelta(minutes=4))
    case_store.upsert([new])
    rescope_guild(**stores_and_ledger(case_store, consent_ledger), guild_id=GUILD_A, guild_shares=True)
    assert scopes(case_store, [old.id, new.id]) == ["server", "shared"]
