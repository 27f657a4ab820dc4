"""The privacy rules under random sequences of what servers and users do, on both store backends.

A seeded random walk drives the real parts (the ingest pipeline on a tiny random checkpoint, NOT
PLIP; the consent ledger; the guild configuration and feedback stores; thumbnails; a case store of
each backend with two collections, as after a model upgrade; a Redis blob store) through grants,
narrowing, withdrawals, sharing on and off, posts, deletions and the bot's removal from a server.
After every step, a tiny model of the rules says which cases each server (and a DM) may see, and
every search must return exactly that. After every withdrawal or deletion, the data directory (every
file, as bytes), every SQL table, every Redis key under the test's prefix and the captured logs must
hold no trace of the erased posts: caption marker, message and attachment ids, case ids, thumbnail.
"""

from __future__ import annotations

import io
import logging
import random
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
import sqlalchemy as sa
from celery import Celery
from PIL import Image
from qdrant_client import QdrantClient

from bot.feedback import FeedbackStore
from bot.guild_config import GuildConfigStore
from ingest.consent_ledger import Consent, ConsentLedger, ConsentScope
from ingest.pipeline import IngestPipeline, Outcome, PostImage
from ingest.scoping import rescope_guild, rescope_user
from ingest.withdrawal import forget_messages, forget_user
from plipbot.composition import Container
from plipbot.settings import load_settings
from plipbot.user_data import UserDataStore
from store.base import CaseStore
from store.edge import EdgeCaseStore
from store.ids import case_point_id
from store.records import CaseHit, ModelKey, SearchFilter
from store.server import ServerCaseStore
from store.similar import SimilarCase
from store.thumbnails import ThumbnailStore
from workers.blobs import RedisBlobStore

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

STEPS = 60
SEEDS = {"edge": 9, "server": 14}
OLD_MODEL = ModelKey("old_model", "v1")  # a name its collection name maps back to
REDIS_URL = "redis://127.0.0.1:6379/0"
ZERO_RUNS = re.compile(rb"\x00{64,}")
LEDGER_TABLES = frozenset({"consents", "consent_audit", "erasure_requests"})
BASE = 900_000_000_000_000_000


@dataclass
class Post:
    guild: int
    author: int
    message: int
    attachment: int
    point_id: str
    caption: str
    created_at: datetime
    thumbnail: bytes = b""


@dataclass
class Rules:
    """What may be seen, from the users' and servers' point of view (no store involved)."""

    guilds: list[int]
    sharing: dict[int, bool] = field(default_factory=dict)
    present: dict[int, bool] = field(default_factory=dict)
    grants: dict[tuple[int, int], Consent] = field(default_factory=dict)
    stored: dict[str, Post] = field(default_factory=dict)

    def shared_now(self, post: Post) -> bool:
        grant = self.grants.get((post.author, post.guild))
        return (
            self.sharing[post.guild]
            and grant is not None
            and grant.scope is ConsentScope.SHARED
            and post.created_at >= grant.scope_since
        )

    def visible_from(self, guild: int | None) -> set[str]:
        return {
            point_id
            for point_id, post in self.stored.items()
            if post.guild == guild or self.shared_now(post)
        }


@dataclass
class World:
    """The parts, all built by the composition root (`Container`), as the bot and workers get them."""

    container: Container
    data_dir: Path
    pipeline: IngestPipeline
    stores: list[CaseStore]
    blobs: RedisBlobStore
    results: Celery
    redis: redis.Redis
    prefix: str
    sql_urls: list[str]

    @property
    def ledger(self) -> ConsentLedger:
        return self.container.consent_ledger

    @property
    def config(self) -> GuildConfigStore:
        return self.container.guild_config

    @property
    def feedback(self) -> FeedbackStore:
        return self.container.feedback

    @property
    def thumbnails(self) -> ThumbnailStore:
        return self.container.thumbnails

    def user_data_stores(self) -> list[UserDataStore]:
        return self.container.user_data_stores()


def _image(rng: random.Random) -> bytes:
    """A distinct image: random blocks of random colours (the tiny model mostly sees colour)."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    for y in range(0, 64, 16):
        for x in range(0, 64, 16):
            pixels[y : y + 16, x : x + 16] = [rng.randrange(256) for _ in range(3)]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(params=["edge", "server"])
def world(
    request: pytest.FixtureRequest, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """Edge store with SQLite, or the server store (qdrant-client's local mode on disk: the code a
    Qdrant server gets) with PostgreSQL; Redis under a prefix of the test's own either way."""
    backend = request.param
    data_dir = tmp_path / "data"
    ledger_url = None
    if backend == "server":
        from tests.postgres import temporary_database

        database = temporary_database("plipbot_scenario", "scenario")
        ledger_url = database.__enter__()
        request.addfinalizer(lambda: database.__exit__(None, None, None))
    prefix = f"test-scenario-{secrets.token_hex(4)}:"
    settings = load_settings(
        data_dir=data_dir,
        model={"name": str(tiny_checkpoint)},
        ingest={"gate_threshold": 0.0},
        ledger={"url": ledger_url},
        broker_url=REDIS_URL,
        workers={"key_prefix": prefix},
    )
    container = Container(settings)
    encoder = container.encoder
    data_dir.mkdir(parents=True, exist_ok=True)
    client = QdrantClient(path=str(data_dir / "qdrant")) if backend == "server" else None
    if client is not None:
        # No Qdrant server here: the server store runs on the client's local mode, opened where the
        # Container would reach a server (one collection per model, as `open_all_case_stores` lists).
        opened = {
            key: ServerCaseStore(client, key) for key in (encoder.identity, OLD_MODEL)
        }
        monkeypatch.setattr(container, "all_case_stores", lambda: list(opened.values()))
        container.__dict__["case_store"] = opened[encoder.identity]
    # An older model's collection, as after an upgrade: withdrawal must reach it too.
    old = EdgeCaseStore(data_dir / "store", OLD_MODEL) if client is None else opened[OLD_MODEL]
    old.ensure_collection(encoder.embed_dim)
    if client is None:
        old.close()  # the Container opens every collection itself (one handle per shard)
    pipeline = container.ingest_pipeline
    stores = container.all_case_stores()
    assert {s.collection for s in stores} == {pipeline.case_store.collection, old.collection}
    stores.sort(key=lambda store: store.collection != pipeline.case_store.collection)
    redis_client = redis.Redis.from_url(REDIS_URL)
    blobs = container.blob_store
    assert isinstance(blobs, RedisBlobStore)
    sqlite = [f"sqlite:///{data_dir}/{name}.sqlite3" for name in ("consent", "bot")]
    sql_urls = [ledger_url] if ledger_url else sqlite
    results = container.celery_app
    yield World(container, data_dir, pipeline, stores, blobs, results, redis_client, prefix, sql_urls)
    container.close()
    if client is not None:
        for store in opened.values():
            store.close()
        client.close()
    keys = list(redis_client.scan_iter(match=f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)
    redis_client.close()


class Scenario:
    """One random walk; `check` compares every search with the rules after each step."""

    def __init__(self, world: World, rng: random.Random, logs: pytest.LogCaptureFixture) -> None:
        self.world = world
        self.rng = rng
        self.logs = logs
        self.guilds = [BASE + 1_000 + n for n in range(3)]
        self.users = [BASE + 2_000 + n for n in range(3)]
        self.rules = Rules(self.guilds)
        for guild in self.guilds:
            self.rules.sharing[guild] = False
            self.rules.present[guild] = True
        self.erased: list[Post] = []
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.next_id = BASE + 10_000
        self.steps: list[str] = []
        self.leak_scans = 0
        self.seen_across = 0  # cases another server (or a DM) was allowed to see: the shared branch ran

    def _tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def _marker(self) -> str:
        """A caption word found nowhere else (letters only: digits would look like a record number)."""
        return "mk" + "".join(self.rng.choice(string.ascii_lowercase) for _ in range(14))

    def _snowflake(self) -> int:
        self.next_id += self.rng.randrange(1, 1000)
        return self.next_id

    # --- actions ------------------------------------------------------------------------------

    def grant(self) -> None:
        user, guild = self.rng.choice(self.users), self.rng.choice(self.guilds)
        scope = self.rng.choice([ConsentScope.SHARED, ConsentScope.SHARED, ConsentScope.SERVER])
        before = self.rules.grants.get((user, guild))
        consent = self.world.ledger.grant(user, guild, scope, at=self._tick())
        self.rules.grants[(user, guild)] = consent
        if before is not None and before.scope is ConsentScope.SHARED and scope is ConsentScope.SERVER:
            self._rescope_user(user, guild)  # what the bot queues when a user narrows
        self.steps.append(f"grant {scope.value}")

    def withdraw(self) -> None:
        user = self.rng.choice(self.users)
        guild = self.rng.choice([*self.guilds, None])
        forget_user(
            consent_ledger=self.world.ledger,
            stores=self.world.user_data_stores(),
            user_id=user,
            guild_id=guild,
        )
        for key in [k for k in self.rules.grants if k[0] == user and guild in (None, k[1])]:
            del self.rules.grants[key]
        self._erase([p for p in self.rules.stored.values() if p.author == user and guild in (None, p.guild)])
        if guild is None:  # gone everywhere: not even their id may stay outside the consent record
            self.scan_for_leaks(user=user)
        self.steps.append("withdraw" + (" everywhere" if guild is None else ""))

    def sharing(self) -> None:
        guild = self.rng.choice(self.guilds)
        enabled = self.rng.random() < 0.7
        self.world.config.set_sharing(guild, enabled, actor_id=1)
        self.rules.sharing[guild] = enabled
        self._rescope_guild(guild)
        self.steps.append(f"sharing {'on' if enabled else 'off'}")

    def post(self) -> None:
        if self.rules.grants and self.rng.random() < 0.75:  # mostly consenting posters, some not
            user, guild = self.rng.choice(sorted(self.rules.grants))
        else:
            user, guild = self.rng.choice(self.users), self.rng.choice(self.guilds)
        message, attachment = self._snowflake(), self._snowflake()
        data = _image(self.rng)
        created_at = self._tick()
        post = Post(
            guild,
            user,
            message,
            attachment,
            case_point_id(guild, message, attachment),
            f"{self._marker()} colon biopsy, tubular adenoma",
            created_at,
        )
        # What the bot does around a post: a first-post notice, the bytes parked for the worker.
        self.world.config.first_time_notice(guild, user)
        blob = self.world.blobs.put(data)
        if not self.rules.present[guild]:
            self.steps.append("post (bot absent)")
            return
        image = PostImage(
            point_id=post.point_id,
            guild_id=guild,
            image=self.world.blobs.get(blob),
            created_at=created_at,
            caption=post.caption,
            channel_id=5,
            message_id=message,
            attachment_id=attachment,
            author_id=user,
            jump_link=f"https://discord.com/channels/{guild}/5/{message}",
        )
        [result] = self.world.pipeline.ingest([image])  # reads the server's sharing itself
        grant = self.rules.grants.get((user, guild))
        if grant is None:
            assert result.outcome is Outcome.NO_CONSENT, result
        else:
            assert result.outcome in (Outcome.INGESTED, Outcome.DUPLICATE), result
        if result.outcome is Outcome.INGESTED:
            post.thumbnail = self.world.thumbnails.get_bytes(post.point_id) or b""
            assert post.thumbnail
            [record] = self.world.stores[0].get([post.point_id])
            older = self.world.stores[1]
            old_payload = record.payload.model_copy(
                update={"model": older.model_name, "revision": older.revision}
            )
            older.upsert([replace(record, payload=old_payload)])  # an older model's copy
            self.rules.stored[post.point_id] = post
            # An answer that showed the case and was never collected (its caller timed out).
            shown = SimilarCase.from_hit(CaseHit(record.id, 1.0, record.payload)).as_dict()
            self.world.results.backend.store_result(
                f"answer-{post.point_id}", {"kind": "search", "cases": [shown]}, "SUCCESS"
            )
            # A vote on the bot's answer to the post.
            self.world.feedback.record(
                self._snowflake(), guild, 5, user, "helpful", None, [("adenocarcinoma", 0.7)], "tiny"
            )
        self.steps.append(f"post {result.outcome.value}")

    def delete(self) -> None:
        if not self.rules.stored:
            return self.post()
        post = self.rng.choice(sorted(self.rules.stored.values(), key=lambda p: p.message))
        forget_messages(stores=self.world.user_data_stores(), guild_id=post.guild, message_ids=[post.message])
        self._erase([post])
        self.steps.append("delete")
        return None

    def remove_bot(self) -> None:
        guild = self.rng.choice(self.guilds)
        if not self.rules.present[guild]:
            self.rules.present[guild] = True  # invited back: sharing stays off until a moderator acts
            self.steps.append("bot re-added")
            return
        self.rules.present[guild] = False
        self.rules.sharing[guild] = False
        self.world.config.set_sharing(guild, False, actor_id=1)  # what on_guild_remove does
        self._rescope_guild(guild)
        self.steps.append("bot removed")

    # --- plumbing -----------------------------------------------------------------------------

    def _rescope_guild(self, guild: int) -> None:
        rescope_guild(
            case_stores=self.world.stores,
            consent_ledger=self.world.ledger,
            guild_id=guild,
            guild_shares=self.world.config.sharing(guild),
        )

    def _rescope_user(self, user: int, guild: int) -> None:
        rescope_user(
            case_stores=self.world.stores,
            consent_ledger=self.world.ledger,
            user_id=user,
            guild_id=guild,
            guild_shares=self.world.config.sharing(guild),
        )

    def _erase(self, posts: list[Post]) -> None:
        for post in posts:
            self.rules.stored.pop(post.point_id, None)
        self.erased.extend(posts)
        if posts:
            self.scan_for_leaks()

    def step(self) -> None:
        action = self.rng.choices(
            [self.grant, self.withdraw, self.sharing, self.post, self.delete, self.remove_bot],
            weights=[4, 2, 2, 6, 2, 1],
        )[0]
        action()
        self.check()

    def check(self) -> None:
        assert self.world.config.sharing_guilds() == {g for g, on in self.rules.sharing.items() if on}
        sharing_guilds = self.world.container.sharing_guilds_now()  # what searches use
        query = np.ones(self.world.pipeline.encoder.embed_dim, dtype=np.float32)
        for store in self.world.stores:
            for guild in [*self.guilds, None]:
                search = SearchFilter(guild_id=guild, sharing_guilds=sharing_guilds)
                found = {hit.id for hit in store.search(query, k=500, filter=search)}
                assert found == self.rules.visible_from(guild), (store, guild, self.steps)
                self.seen_across += sum(self.rules.stored[i].guild != guild for i in found)
                assert store.count(search) == len(found)

    def scan_for_leaks(self, user: int | None = None) -> None:
        """Every trace of every erased post (and the id of a `user` who withdrew everywhere), looked for
        everywhere it could hide. The consent ledger's tables keep user ids by design (the record of
        each consent and erasure) and are searched for the posts' traces only."""
        self.leak_scans += 1
        needles: dict[bytes, str] = {}
        for post in self.erased:
            needles[post.caption.split()[0].encode()] = "caption"
            needles[str(post.message).encode()] = "message id"
            needles[str(post.attachment).encode()] = "attachment id"
            needles[post.point_id.encode()] = "case id"
            needles[post.point_id.replace("-", "").encode()] = "case id (hex)"
            if post.thumbnail:
                needles[post.thumbnail[-256:]] = "thumbnail bytes"
        leaks: list[str] = []

        def look(where: str, haystack: bytes) -> None:
            # The engines preallocate files as long runs of zeros; search only what lies between them.
            parts = [part for part in ZERO_RUNS.split(haystack) if part]
            leaks.extend(
                f"{what} in {where}" for needle, what in needles.items() if any(needle in p for p in parts)
            )

        for path in sorted(p for p in self.world.data_dir.rglob("*") if p.is_file()):
            look(str(path.relative_to(self.world.data_dir)), path.read_bytes())
        for url in self.world.sql_urls:
            engine = sa.create_engine(url)
            try:
                metadata = sa.MetaData()
                metadata.reflect(engine)
                with engine.connect() as connection:
                    for table in metadata.sorted_tables:
                        rows = repr(connection.execute(sa.select(table)).all()).encode()
                        look(f"table {table.name}", rows)
                        kept_by_design = table.name in LEDGER_TABLES
                        if user is not None and not kept_by_design and str(user).encode() in rows:
                            leaks.append(f"user id in table {table.name}")
            finally:
                engine.dispose()
        for key in self.world.redis.scan_iter(match=f"{self.world.prefix}*"):
            value = self.world.redis.dump(key) or b""
            look(f"redis {key!r}", key + value)
            if user is not None and str(user).encode() in key + value:
                leaks.append(f"user id in redis {key!r}")
        logs = "\n".join(r.getMessage() for r in self.logs.records).encode()
        look("logs", logs)
        if user is not None and str(user).encode() in logs:
            leaks.append("user id in logs")
        assert not leaks, leaks


@pytest.mark.parametrize("steps", [STEPS])
def test_every_search_follows_the_rules_and_erasure_leaves_no_trace(
    world: World, steps: int, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.INFO)
    backend = request.node.callspec.params["world"]
    scenario = Scenario(world, random.Random(SEEDS[backend]), caplog)
    for _ in range(steps):
        scenario.step()
    # Every kind of step ran, and erasures were scanned.
    kinds = {s.split()[0] for s in scenario.steps}
    assert {"grant", "withdraw", "sharing", "post", "delete"} <= kinds, scenario.steps
    assert scenario.leak_scans > 0 and scenario.erased and scenario.seen_across > 0
    counts = {kind: sum(s.startswith(kind) for s in scenario.steps) for kind in sorted(kinds)}
    print(
        f"{backend}: {len(scenario.steps)} steps {counts}, {len(scenario.erased)} posts erased, "
        f"{scenario.leak_scans} leak scans, 0 leaks, {scenario.seen_across} cross-server sightings"
    )
