"""Consent ledger: the timing rules, the audit trail, durability and concurrency, on SQLite and PostgreSQL.

Fixtures (`ledger_url`, `consent_ledger`) run each test on both backends; see conftest.py.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from ingest.consent_ledger import (
    UNREACHABLE_MESSAGE,
    AuditAction,
    Consent,
    ConsentLedger,
    ConsentScope,
)
from plipbot.errors import ConsentError, PlipbotError, ServiceUnavailableError
from plipbot.settings import load_settings
from tests.postgres import POSTGRES_ADMIN_URL, admin_engine

USER = 111_111_111_111_111_111  # snowflakes need 64 bits
OTHER_USER = 222_222_222_222_222_222
GUILD = 900_000_000_000_000_001
OTHER_GUILD = 900_000_000_000_000_002
OPERATOR = 42

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def test_grant_is_current_and_timestamps_are_utc(consent_ledger: ConsentLedger) -> None:
    paris = timezone(timedelta(hours=2))
    consent = consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=T0.astimezone(paris))

    assert consent_ledger.current(USER, GUILD) == consent
    assert consent.active
    assert consent.granted_at == T0
    assert consent.granted_at.tzinfo is UTC
    assert consent_ledger.current(USER, OTHER_GUILD) is None
    assert consent_ledger.current(OTHER_USER, GUILD) is None


def test_grant_defaults_to_now(consent_ledger: ConsentLedger) -> None:
    before = datetime.now(UTC)
    consent = consent_ledger.grant(USER, GUILD, "shared")
    assert before <= consent.granted_at <= datetime.now(UTC)
    assert consent.scope is ConsentScope.SHARED


def test_allows_only_posts_made_while_a_grant_is_active(consent_ledger: ConsentLedger) -> None:
    assert consent_ledger.allows(USER, GUILD, minutes(0)) is None  # never granted

    consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(10))
    assert consent_ledger.allows(USER, GUILD, minutes(9)) is None  # posted before the grant
    assert consent_ledger.allows(USER, GUILD, minutes(10)) is ConsentScope.SERVER  # at the grant
    assert consent_ledger.allows(USER, GUILD, minutes(15)) is ConsentScope.SERVER
    assert consent_ledger.allows(USER, OTHER_GUILD, minutes(15)) is None  # consent is per guild

    consent_ledger.withdraw(USER, GUILD, at=minutes(20))
    for posted in (minutes(9), minutes(15), minutes(25)):  # nothing, not even posts from the granted period
        assert consent_ledger.allows(USER, GUILD, posted) is None

    consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(30))
    assert consent_ledger.allows(USER, GUILD, minutes(15)) is None  # from the earlier grant
    assert consent_ledger.allows(USER, GUILD, minutes(25)) is None  # from the withdrawn gap
    assert consent_ledger.allows(USER, GUILD, minutes(30)) is ConsentScope.SERVER
    assert consent_ledger.allows(USER, GUILD, minutes(35)) is ConsentScope.SERVER


def test_allows_rejects_naive_post_times(consent_ledger: ConsentLedger) -> None:
    consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        consent_ledger.allows(USER, GUILD, datetime(2024, 5, 2, 12, 0))


def test_regrant_after_withdrawal_is_a_new_row(consent_ledger: ConsentLedger) -> None:
    first = consent_ledger.grant(USER, GUILD, ConsentScope.SHARED, at=minutes(0))
    [withdrawn] = consent_ledger.withdraw(USER, GUILD, at=minutes(5))
    second = consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(10))

    assert withdrawn.id == first.id
    assert withdrawn.withdrawn_at == minutes(5)
    assert second.id != first.id
    assert consent_ledger.current(USER, GUILD) == second
    assert consent_ledger.history(USER, GUILD) == [withdrawn, second]


def test_grant_with_another_scope_changes_the_scope(consent_ledger: ConsentLedger) -> None:
    first = consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(0))
    widened = consent_ledger.grant(USER, GUILD, ConsentScope.SHARED, at=minutes(10))

    assert widened.id == first.id  # same grant, not a new one
    assert widened.granted_at == minutes(0)
    assert widened.scope is ConsentScope.SHARED
    assert widened.scope_since == minutes(10)
    # Widening covers posts from then on; older posts keep the scope they were made under.
    assert consent_ledger.allows(USER, GUILD, minutes(5)) is ConsentScope.SERVER
    assert consent_ledger.allows(USER, GUILD, minutes(10)) is ConsentScope.SHARED

    narrowed = consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(20))
    assert narrowed.id == first.id
    # Narrowing covers every post at once.
    assert consent_ledger.allows(USER, GUILD, minutes(15)) is ConsentScope.SERVER
    assert consent_ledger.allows(USER, GUILD, minutes(25)) is ConsentScope.SERVER

    again = consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(30))
    assert again == narrowed  # same scope again: nothing changes, nothing audited

    actions = [(entry.action, entry.scope) for entry in consent_ledger.audit(USER)]
    assert actions == [
        (AuditAction.GRANT, ConsentScope.SERVER),
        (AuditAction.SCOPE_CHANGE, ConsentScope.SHARED),
        (AuditAction.SCOPE_CHANGE, ConsentScope.SERVER),
    ]
    assert [entry.detail for entry in consent_ledger.audit(USER)][1:] == [
        {"previous_scope": "server"},
        {"previous_scope": "shared"},
    ]


def test_unknown_scope_is_a_consent_error(consent_ledger: ConsentLedger) -> None:
    with pytest.raises(ConsentError, match="Unknown consent scope 'public'") as caught:
        consent_ledger.grant(USER, GUILD, "public")
    assert isinstance(caught.value, PlipbotError)
    assert consent_ledger.current(USER, GUILD) is None


def test_withdraw_in_one_guild_keeps_the_others(consent_ledger: ConsentLedger) -> None:
    consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(0))
    kept = consent_ledger.grant(USER, OTHER_GUILD, ConsentScope.SHARED, at=minutes(0))

    withdrawn = consent_ledger.withdraw(USER, GUILD, at=minutes(5))

    assert [consent.guild_id for consent in withdrawn] == [GUILD]
    assert consent_ledger.current(USER, GUILD) is None
    assert consent_ledger.current(USER, OTHER_GUILD) == kept
    assert [grant.user_id for grant in consent_ledger.active_grants(OTHER_GUILD)] == [USER]
    assert consent_ledger.active_grants(GUILD) == []


def test_withdraw_without_guild_withdraws_everywhere(consent_ledger: ConsentLedger) -> None:
    consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(0))
    consent_ledger.grant(USER, OTHER_GUILD, ConsentScope.SHARED, at=minutes(1))
    consent_ledger.grant(OTHER_USER, GUILD, ConsentScope.SERVER, at=minutes(2))

    withdrawn = consent_ledger.withdraw(USER, actor_id=OPERATOR, at=minutes(5))

    assert sorted(consent.guild_id for consent in withdrawn) == [GUILD, OTHER_GUILD]
    assert all(consent.withdrawn_at == minutes(5) for consent in withdrawn)
    assert consent_ledger.current(USER, GUILD) is None
    assert consent_ledger.current(USER, OTHER_GUILD) is None
    assert consent_ledger.current(OTHER_USER, GUILD) is not None  # someone else's consent is untouched
    withdrawals = [entry for entry in consent_ledger.audit(USER) if entry.action is AuditAction.WITHDRAW]
    assert {entry.guild_id for entry in withdrawals} == {GUILD, OTHER_GUILD}
    assert all(entry.actor_id == OPERATOR and entry.detail == {"all_guilds": True} for entry in withdrawals)
    # Nothing left to withdraw: a no-op, and not audited.
    assert consent_ledger.withdraw(USER) == []
    assert len(consent_ledger.audit(USER)) == 4


def test_withdrawal_before_the_grant_is_clamped(consent_ledger: ConsentLedger) -> None:
    """Clock skew between workers must not produce a grant that ends before it began."""
    consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(10))
    [withdrawn] = consent_ledger.withdraw(USER, GUILD, at=minutes(9))
    assert withdrawn.withdrawn_at == minutes(10)


def test_audit_is_complete_and_ordered(consent_ledger: ConsentLedger) -> None:
    consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=minutes(0))
    consent_ledger.grant(OTHER_USER, GUILD, ConsentScope.SHARED, at=minutes(1))
    consent_ledger.grant(USER, GUILD, ConsentScope.SHARED, at=minutes(2))
    consent_ledger.grant(USER, OTHER_GUILD, ConsentScope.SERVER, at=minutes(3))
    consent_ledger.withdraw(USER, GUILD, at=minutes(4))
    deletion = consent_ledger.record_deletion(
        USER, GUILD, 7, actor_id=OPERATOR, detail={"collection": "cases"}, at=minutes(5)
    )
    consent_ledger.record_deletion(USER, None, 3, actor_id=OPERATOR, at=minutes(6))

    everything = consent_ledger.audit()
    assert [entry.id for entry in everything] == sorted(entry.id for entry in everything)
    assert [(entry.action, entry.user_id, entry.guild_id, entry.at) for entry in everything] == [
        (AuditAction.GRANT, USER, GUILD, minutes(0)),
        (AuditAction.GRANT, OTHER_USER, GUILD, minutes(1)),
        (AuditAction.SCOPE_CHANGE, USER, GUILD, minutes(2)),
        (AuditAction.GRANT, USER, OTHER_GUILD, minutes(3)),
        (AuditAction.WITHDRAW, USER, GUILD, minutes(4)),
        (AuditAction.DELETE, USER, GUILD, minutes(5)),
        (AuditAction.DELETE, USER, None, minutes(6)),
    ]
    assert all(entry.at.tzinfo is UTC for entry in everything)
    actors = [USER, OTHER_USER, USER, USER, USER, OPERATOR, OPERATOR]
    assert [entry.actor_id for entry in everything] == actors
    assert everything[4].scope is ConsentScope.SHARED  # what was withdrawn
    assert everything[5] == deletion
    assert deletion.detail == {"collection": "cases", "points_deleted": 7}
    assert everything[6].detail == {"points_deleted": 3}

    assert consent_ledger.audit(user_id=OTHER_USER) == [everything[1]]
    assert consent_ledger.audit(guild_id=OTHER_GUILD) == [everything[3]]
    assert consent_ledger.audit(user_id=USER, guild_id=GUILD) == [everything[i] for i in (0, 2, 4, 5)]


def test_record_deletion_rejects_negative_counts(consent_ledger: ConsentLedger) -> None:
    with pytest.raises(ValueError, match="points_deleted"):
        consent_ledger.record_deletion(USER, GUILD, -1)
    assert consent_ledger.audit() == []


def test_ledger_persists_across_instances(ledger_url: str) -> None:
    with ConsentLedger(ledger_url) as ledger:
        granted = ledger.grant(USER, GUILD, ConsentScope.SHARED, at=minutes(0))
        ledger.grant(USER, OTHER_GUILD, ConsentScope.SERVER, at=minutes(1))
        ledger.withdraw(USER, OTHER_GUILD, at=minutes(2))
        audit = ledger.audit()

    with ConsentLedger(ledger_url) as reopened:
        assert reopened.current(USER, GUILD) == granted
        assert reopened.current(USER, OTHER_GUILD) is None
        assert reopened.audit() == audit
        assert reopened.allows(USER, GUILD, minutes(1)) is ConsentScope.SHARED


def test_from_settings_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "plipbot-data")
    with ConsentLedger.from_settings(settings) as ledger:
        ledger.grant(USER, GUILD, ConsentScope.SERVER, at=T0)
    assert (tmp_path / "plipbot-data" / "consent.sqlite3").is_file()


def test_from_settings_uses_the_ledger_url(ledger_url: str, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "unused", ledger={"url": ledger_url})
    with ConsentLedger.from_settings(settings) as ledger:
        ledger.grant(USER, GUILD, ConsentScope.SERVER, at=T0)
    with ConsentLedger(ledger_url) as ledger:
        assert ledger.current(USER, GUILD) is not None
    assert not (tmp_path / "unused").exists()


def test_concurrent_grants_leave_one_active_grant(
    consent_ledger: ConsentLedger, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the worst interleaving: both workers read "no active grant" before either inserts.

    Both backends serialise one user's consent changes (SQLite at BEGIN IMMEDIATE, PostgreSQL with a
    per-user advisory lock), so the second worker waits (the barrier times out) and then finds the
    first grant: one read of nothing, one read of the winner's grant, and a single audited grant.
    """
    barrier = threading.Barrier(2, timeout=0.3)  # always times out: the second worker is waiting
    waited = threading.local()
    reads: list[int] = []
    find_active = ConsentLedger._find_active

    def find_active_then_meet(session, user_id, guild_id):  # type: ignore[no-untyped-def]
        rows = find_active(session, user_id, guild_id)
        reads.append(len(rows))
        if not getattr(waited, "done", False):
            waited.done = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return rows

    monkeypatch.setattr(ConsentLedger, "_find_active", staticmethod(find_active_then_meet))

    def worker(_: int) -> Consent:
        return consent_ledger.grant(USER, GUILD, ConsentScope.SERVER, at=T0)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(worker, range(2))

    assert first == second
    assert consent_ledger.current(USER, GUILD) == first
    assert [entry.action for entry in consent_ledger.audit(USER)] == [AuditAction.GRANT]
    assert len(consent_ledger.history(USER)) == 1
    assert reads == [0, 1]


def test_concurrent_grants_and_withdrawals_keep_the_audit_consistent(consent_ledger: ConsentLedger) -> None:
    """Workers hammering one user: never two active grants, never a double withdrawal in the audit."""
    rounds = 6
    start = threading.Barrier(3, timeout=10)

    def worker(index: int) -> None:
        start.wait()
        for step in range(rounds):
            try:
                if (index + step) % 3 == 0:
                    consent_ledger.withdraw(USER, GUILD)
                else:
                    consent_ledger.grant(USER, GUILD, list(ConsentScope)[(index + step) % 2])
            except ConsentError:
                pass  # lost the race twice in a row: the caller is told to retry, the state stays valid

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(worker, range(3)))

    active_scope: ConsentScope | None = None
    for entry in consent_ledger.audit(USER, GUILD):  # replay: every step must follow from the one before
        if entry.action is AuditAction.GRANT:
            assert active_scope is None
            active_scope = entry.scope
        elif entry.action is AuditAction.SCOPE_CHANGE:
            assert active_scope is not None
            assert entry.scope is not active_scope
            active_scope = entry.scope
        else:
            assert entry.action is AuditAction.WITHDRAW
            assert active_scope is entry.scope
            active_scope = None
    current = consent_ledger.current(USER, GUILD)
    assert (current.scope if current else None) is active_scope
    assert sum(consent.active for consent in consent_ledger.history(USER)) <= 1


def test_unreachable_database_raises_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailableError) as caught:
        ConsentLedger("postgresql+psycopg://postgres@127.0.0.1:1/x")
    assert str(caught.value) == UNREACHABLE_MESSAGE
    assert isinstance(caught.value, PlipbotError)


def test_database_lost_after_start_raises_service_unavailable(ledger_url: str) -> None:
    """A ledger that worked must turn a vanished database into the same short message on every call."""
    url = make_url(ledger_url)
    if url.get_backend_name() == "sqlite":
        ledger = ConsentLedger(ledger_url)
        ledger.close()  # drop pooled connections so the next call must reopen the file
        shutil.rmtree(Path(url.database or "").parent)
    else:
        name = f"{url.database}_lost"
        admin = admin_engine(POSTGRES_ADMIN_URL)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        ledger = ConsentLedger(url.set(database=name).render_as_string(hide_password=False))
        ledger.grant(USER, GUILD, ConsentScope.SERVER, at=T0)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
    try:
        for call in (
            lambda: ledger.current(USER, GUILD),
            lambda: ledger.grant(USER, GUILD, ConsentScope.SHARED),
            lambda: ledger.withdraw(USER),
            lambda: ledger.audit(),
        ):
            with pytest.raises(ServiceUnavailableError, match="unreachable"):
                call()
    finally:
        ledger.close()


def test_unusable_urls_are_consent_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConsentError, match="Cannot create the consent ledger folder"):
        ConsentLedger(f"sqlite:///{blocker / 'sub' / 'consent.sqlite3'}")
    with pytest.raises(ConsentError, match="not a valid database URL"):
        ConsentLedger("not a url")
    with pytest.raises(ConsentError, match="unusable database driver"):
        ConsentLedger("nosuchdb://host/db")
