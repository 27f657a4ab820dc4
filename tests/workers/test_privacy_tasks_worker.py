"""The privacy tasks (rescope, forget_messages, sweep_erasures) through Redis and a real `plipbot
worker`, and results deleted as soon as the caller has read them. Tiny random checkpoint, NOT PLIP."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from bot.guild_config import GuildConfigStore
from ingest.consent_ledger import ConsentLedger
from tests.workers.harness import WorkerProcess
from tests.workers.test_case_tasks_worker import (  # noqa: F401  (fixtures)
    ALICE,
    BOB,
    GUILD,
    TASK_TIMEOUT_S,
    CorpusWorkerConfig,
    client,
    config,
    consent_ledger,
    crop,
    ingest,
    start_worker,
    workers,
)
from workers.case_contracts import SearchRequest, SearchResult
from workers.client import TaskClient
from workers.privacy_contracts import (
    ForgetMessagesRequest,
    ForgetMessagesResult,
    RescopeRequest,
    RescopeResult,
    SweepErasuresResult,
)

pytestmark = pytest.mark.integration


def test_rescope_forget_messages_and_sweep_through_a_worker_process(
    config: CorpusWorkerConfig,  # noqa: F811
    workers: list[WorkerProcess],  # noqa: F811
    consent_ledger: ConsentLedger,  # noqa: F811
    client: TaskClient,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker = start_worker(config, tmp_path / "worker.log", workers)
    guild_config = GuildConfigStore.from_settings(config.settings())  # the worker's bot database
    try:
        guild_config.set_sharing(GUILD, True, actor_id=1)
        consent_ledger.grant(ALICE, GUILD, "shared")
        consent_ledger.grant(BOB, GUILD, "server")
        alices = ingest(client, crop(0, 0, 200), 11, ALICE, "tubular adenoma")
        bobs = ingest(client, crop(300, 0, 200), 12, BOB, "lymph node")
        assert (alices.outcome, bobs.outcome) == ("ingested", "ingested")

        def seen_from_a_dm() -> list[str]:
            found = client.search(SearchRequest(mode="text", text="adenoma", k=5), timeout_s=TASK_TIMEOUT_S)
            assert isinstance(found, SearchResult), found
            return [case.id for case in found.cases]

        assert seen_from_a_dm() == [alices.point_id]  # shared, and the server shares
        guild_config.set_sharing(GUILD, False, actor_id=1)
        assert seen_from_a_dm() == []  # hidden at once, before any re-scope
        rescoped = client.rescope(RescopeRequest(guild_id=GUILD), timeout_s=TASK_TIMEOUT_S)
        assert isinstance(rescoped, RescopeResult) and rescoped.stamps == 1, rescoped

        forgotten = client.forget_messages(
            ForgetMessagesRequest(guild_id=GUILD, message_ids=[12]), timeout_s=TASK_TIMEOUT_S
        )
        assert isinstance(forgotten, ForgetMessagesResult), forgotten
        assert sum(n for name, n in forgotten.removed.items() if name.startswith("cases:")) == 1
        swept = client.sweep_erasures(timeout_s=TASK_TIMEOUT_S)
        assert isinstance(swept, SweepErasuresResult) and (swept.completed, swept.pending) == (0, 0)

        # Every result above was deleted once read: nothing waits in Redis for its expiry.
        store = redis.Redis.from_url(config.broker_url)
        assert list(store.scan_iter(match=f"{config.key_prefix}celery-task-meta-*")) == []
        store.close()
        assert "Traceback" not in worker.log()
    finally:
        guild_config.close()
