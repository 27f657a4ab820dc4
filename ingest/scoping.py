"""Re-scoping: make the stored `scope` of cases follow the current sharing state.

A case is stamped `shared` only while three things hold: its author's active grant in its server is
`shared`, the case was posted at or after that scope took effect (`Consent.scope_for`), and the
server shares. When any of these changes, these functions rewrite the stamps in every collection with
Qdrant's set-payload-by-filter. They read the current state (ledger and guild configuration), not the
change that triggered them, so a run that is repeated, late, or overtaken by a newer change is
harmless: the last run leaves what the state says.

Each run narrows first and widens second, so a search in between sees fewer shared cases, never more.
Search does not wait for re-scoping either: `SearchFilter.sharing_guilds` hides a server that stopped
sharing at query time, so a re-scope that never ran shows less, never more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ingest.consent_ledger import Consent, ConsentLedger, ConsentScope
from store.base import CaseStore

log = logging.getLogger(__name__)


def _apply(
    case_stores: Iterable[CaseStore],
    guild_id: int,
    author_id: int | None,
    sharing_grants: Iterable[Consent],
) -> int:
    """Stamp `server` on the guild's cases (one author's when given), then `shared` on those that
    `sharing_grants` cover; returns the number of stamps written."""
    stores = list(case_stores)
    grants = list(sharing_grants)
    changed = 0
    for store in stores:
        changed += store.rescope("server", guild_id=guild_id, author_id=author_id)
    for store in stores:
        for grant in grants:
            changed += store.rescope(
                "shared", guild_id=guild_id, author_id=grant.user_id, created_from=grant.scope_since
            )
    return changed


def _sharing(grants: Iterable[Consent]) -> list[Consent]:
    return [grant for grant in grants if grant.active and grant.scope is ConsentScope.SHARED]


def rescope_guild(
    *, case_stores: Iterable[CaseStore], consent_ledger: ConsentLedger, guild_id: int, guild_shares: bool
) -> int:
    """Give every case of the server the scope the ledger and the server's sharing allow now (sharing
    turned off or on, the bot removed from the server). Returns the number of stamps written."""
    grants = _sharing(consent_ledger.active_grants(guild_id)) if guild_shares else []
    changed = _apply(case_stores, guild_id, None, grants)
    log.info("re-scoped guild %s (shares: %s): %d stamps written", guild_id, guild_shares, changed)
    return changed


def rescope_user(
    *,
    case_stores: Iterable[CaseStore],
    consent_ledger: ConsentLedger,
    user_id: int,
    guild_id: int,
    guild_shares: bool,
) -> int:
    """Give one author's cases in the server the scope allowed now (their consent narrowed or
    widened). Returns the number of stamps written."""
    grant = consent_ledger.current(user_id, guild_id) if guild_shares else None
    changed = _apply(case_stores, guild_id, user_id, _sharing([] if grant is None else [grant]))
    log.info("re-scoped one author's cases in guild %s: %d stamps written", guild_id, changed)
    return changed
