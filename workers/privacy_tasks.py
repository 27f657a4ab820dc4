"""Privacy tasks on the ingest queue: re-scope a server's cases, forget deleted messages, finish open
erasures. Thin handlers over `ingest.scoping` and `ingest.withdrawal`; every store they reach comes
from the Container (`all_case_stores`, `user_data_stores`), so no store can be forgotten here.

All are idempotent (each reads the current state, not the change that triggered it), so they run with
acks_late and a lost or repeated message is harmless. The embedded case store allows one handle per
process, so corpus writes hold the model lock as ingest does.
"""

from __future__ import annotations

from workers.privacy_contracts import (
    ForgetMessagesRequest,
    ForgetMessagesResult,
    RescopeRequest,
    RescopeResult,
    SweepErasuresRequest,
    SweepErasuresResult,
)
from workers.runtime import TaskContext, TaskRegistry

PRIVACY_TASKS = TaskRegistry()


@PRIVACY_TASKS.task(
    "plipbot.rescope", request=RescopeRequest, result=RescopeResult, idempotent=True, max_retries=3
)
def rescope(request: RescopeRequest, context: TaskContext) -> RescopeResult:
    """Stamp a server's cases (one author's) with the scope the ledger and its sharing allow now."""
    from ingest.scoping import rescope_guild, rescope_user

    container = context.resources.container
    shares = container.guild_config.sharing(request.guild_id)
    with context.resources.model_lock:
        stores = container.all_case_stores()
        if request.user_id is None:
            stamps = rescope_guild(
                case_stores=stores,
                consent_ledger=container.consent_ledger,
                guild_id=request.guild_id,
                guild_shares=shares,
            )
        else:
            stamps = rescope_user(
                case_stores=stores,
                consent_ledger=container.consent_ledger,
                user_id=request.user_id,
                guild_id=request.guild_id,
                guild_shares=shares,
            )
    return RescopeResult(stamps=stamps)


@PRIVACY_TASKS.task(
    "plipbot.forget_messages",
    request=ForgetMessagesRequest,
    result=ForgetMessagesResult,
    idempotent=True,
    max_retries=3,
)
def forget_messages(request: ForgetMessagesRequest, context: TaskContext) -> ForgetMessagesResult:
    """Erase what messages deleted on Discord left in every store."""
    from ingest.withdrawal import forget_messages as erase

    container = context.resources.container
    with context.resources.model_lock:
        removed = erase(
            stores=container.user_data_stores(), guild_id=request.guild_id, message_ids=request.message_ids
        )
    return ForgetMessagesResult(removed=removed)


@PRIVACY_TASKS.task(
    "plipbot.sweep_erasures", request=SweepErasuresRequest, result=SweepErasuresResult, idempotent=True
)
def sweep_erasures(request: SweepErasuresRequest, context: TaskContext) -> SweepErasuresResult:
    """Retry every withdrawal whose erasure a failing store cut short."""
    from ingest.withdrawal import sweep_erasures as sweep

    container = context.resources.container
    with context.resources.model_lock:
        completed = sweep(consent_ledger=container.consent_ledger, stores=container.user_data_stores())
    return SweepErasuresResult(
        completed=len(completed), pending=len(container.consent_ledger.pending_erasures())
    )
