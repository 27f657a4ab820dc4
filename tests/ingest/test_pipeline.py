"""The ingest pipeline end to end on real parts: a tiny content-dominant checkpoint (random, NOT
PLIP), the embedded qdrant-edge store, thumbnails on disk and a SQLite consent ledger."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ingest.consent_ledger import AuditAction, ConsentScope
from ingest.pipeline import IngestPipeline, Outcome, PostImage
from ingest.withdrawal import forget_user
from plipbot.composition import Container
from plipbot.settings import load_settings
from store.ids import case_point_id
from store.records import SearchFilter
from tests.embedded_settings import embedded_settings
from tests.imagegen import encode, ihc, noise, png_claiming_size, solid, texture

GUILD, OTHER_GUILD = 1001, 2002
ALICE, BOB = 11, 22


@pytest.fixture
def container(tiny_checkpoint: Path, tmp_path: Path) -> Any:
    # A random checkpoint cannot tell pathology from a selfie: the gate is off here (threshold 0) and
    # tested on its own below.
    c = Container(embedded_settings(tiny_checkpoint, tmp_path / "data"))
    yield c
    c.close()


@pytest.fixture
def pipeline(container: Container) -> IngestPipeline:
    return container.ingest_pipeline


def post(
    image: Image.Image | bytes,
    *,
    message: int,
    author: int = ALICE,
    guild: int = GUILD,
    caption: str = "",
    when: datetime | None = None,
    fmt: str = "PNG",
) -> PostImage:
    data = image if isinstance(image, bytes) else encode(image, fmt)
    return PostImage(
        point_id=case_point_id(guild, message, 1),
        guild_id=guild,
        image=data,
        created_at=when or datetime.now(UTC),
        caption=caption,
        channel_id=5,
        message_id=message,
        attachment_id=1,
        author_id=author,
        jump_link=f"https://discord.com/channels/{guild}/5/{message}",
        name=f"message {message}",
    )


def crops() -> list[Image.Image]:
    """Distinct test images: regions of scikit-image's public IHC sample, a texture and noise.

    A random checkpoint sees mostly colour statistics, so two smooth pink textures (or a pink solid
    and a pink tissue region) can embed at cosine > 0.95; this set is checked to stay apart.
    """
    base = ihc()
    regions = [base.crop((x, y, x + 200, y + 200)) for x, y in ((0, 0), (300, 0), (0, 300))]
    return [*regions, texture(seed=4), noise((200, 200))]


def test_nothing_enters_without_consent(pipeline: IngestPipeline) -> None:
    unreachable = PostImage(
        point_id=case_point_id(GUILD, 1, 1),
        guild_id=GUILD,
        image="http://127.0.0.1:1/x.png",
        created_at=datetime.now(UTC),
        author_id=ALICE,
    )
    [result] = pipeline.ingest([unreachable])
    assert result.outcome is Outcome.NO_CONSENT  # decided before any download was tried
    assert pipeline.case_store.count() == 0


def test_posts_before_the_grant_are_not_ingested(pipeline: IngestPipeline) -> None:
    earlier = datetime.now(UTC) - timedelta(hours=1)
    pipeline.consent_ledger.grant(ALICE, GUILD, "server")
    [old] = pipeline.ingest([post(crops()[0], message=1, when=earlier)])
    [new] = pipeline.ingest([post(crops()[0], message=2)])
    assert old.outcome is Outcome.NO_CONSENT and new.outcome is Outcome.INGESTED


def test_ingest_stores_vectors_payload_and_clean_thumbnail(pipeline: IngestPipeline) -> None:
    pipeline.consent_ledger.grant(ALICE, GUILD, "shared")
    exif = Image.Exif()
    exif[0x010F] = "SecretScannerCorp"  # Make
    exif[0x0132] = "2024:01:02 03:04:05"  # DateTime
    buf = io.BytesIO()
    crops()[0].save(buf, "JPEG", exif=exif)
    [result] = pipeline.ingest(
        [post(buf.getvalue(), message=7, caption="Signet ring cells in gastric mucosa")]
    )
    assert result.outcome is Outcome.INGESTED, result
    [record] = pipeline.case_store.get([result.point_id])
    p = record.payload
    assert (p.guild_id, p.message_id, p.author_id, p.source) == (GUILD, 7, ALICE, "discord")
    assert p.scope == "server"  # shared consent, but this server has not chosen to share
    assert p.caption == "Signet ring cells in gastric mucosa" and record.text_vector is not None
    assert p.model == "local" and p.revision.startswith("sha256:")
    thumb = pipeline.thumbnails.get_bytes(result.point_id)
    assert thumb is not None and b"SecretScannerCorp" not in thumb and b"2024:01:02" not in thumb
    assert max(Image.open(io.BytesIO(thumb)).size) <= 256


def test_repeated_ingest_is_idempotent(pipeline: IngestPipeline) -> None:
    pipeline.consent_ledger.grant(ALICE, GUILD, "server")
    item = post(crops()[1], message=3, caption="x")
    first = pipeline.ingest([item])[0]
    second = pipeline.ingest([item])[0]
    assert first.outcome is second.outcome is Outcome.INGESTED
    assert pipeline.case_store.count() == 1


def test_reposts_link_to_the_existing_case_within_a_server(pipeline: IngestPipeline) -> None:
    ledger = pipeline.consent_ledger
    ledger.grant(ALICE, GUILD, "server")
    ledger.grant(BOB, GUILD, "server")
    ledger.grant(BOB, OTHER_GUILD, "server")
    images = crops()
    original = pipeline.ingest([post(images[0], message=10)])[0]
    recompressed = images[0].resize((190, 190))
    results = pipeline.ingest(
        [
            post(images[0], message=11, author=BOB),  # identical repost
            post(recompressed, message=12, author=BOB, fmt="JPEG"),  # re-encoded, resized
            post(images[0], message=13, author=BOB, guild=OTHER_GUILD),  # another server: its own case
            post(images[2], message=14, author=BOB),  # a different image
            post(images[3], message=15, author=BOB),
        ]
    )
    outcomes = [r.outcome for r in results]
    assert outcomes == [
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        Outcome.INGESTED,
        Outcome.INGESTED,
        Outcome.INGESTED,
    ]
    assert results[0].duplicate_of == original.point_id == results[1].duplicate_of
    assert pipeline.case_store.count() == 4


def test_distinct_test_images_stay_below_the_duplicate_threshold(pipeline: IngestPipeline) -> None:
    """The trap: random weights map images together; the test checkpoint must keep them apart."""
    images = crops()
    emb = pipeline.encoder.encode_images(images)
    cos = emb @ emb.T
    assert cos[~np.eye(len(images), dtype=bool)].max() < pipeline.settings.duplicate_cosine


def test_bad_files_are_rejected_with_reasons_and_never_stop_the_batch(pipeline: IngestPipeline) -> None:
    pipeline.consent_ledger.grant(ALICE, GUILD, "server")
    good = encode(crops()[0], "PNG")
    results = pipeline.ingest(
        [
            post(good[: len(good) // 2], message=20),  # truncated
            post(png_claiming_size(40000, 40000), message=21),  # decompression bomb
            post(b"%PDF-1.7 pretend report", message=22),  # not an image
            post(good, message=23),
            post(solid(size=(4000, 20)), message=24),  # absurd aspect ratio
        ]
    )
    outcomes = [r.outcome for r in results]
    assert outcomes == [
        Outcome.REJECTED,
        Outcome.REJECTED,
        Outcome.REJECTED,
        Outcome.INGESTED,
        Outcome.REJECTED,
    ]
    assert "truncated" in results[0].reason or "corrupt" in results[0].reason
    assert "pixels" in results[1].reason
    assert "PDF" in results[2].reason
    assert all("\n" not in r.reason for r in results)
    assert pipeline.case_store.count() == 1 and len(list(pipeline.thumbnails.ids())) == 1


def test_captions_with_identifiers_are_rejected_or_held(pipeline: IngestPipeline) -> None:
    pipeline.consent_ledger.grant(ALICE, GUILD, "server")
    images = crops()
    phone, name, fine = pipeline.ingest(
        [
            post(images[0], message=30, caption="call me on +44 20 7946 0958 about this one"),
            post(images[1], message=31, caption="biopsy from Mrs. Jenkins, left breast"),
            post(images[2], message=32, caption="ER positive, HER2 3+, Ki-67 30%, x400"),
        ]
    )
    assert phone.outcome is Outcome.REJECTED and "phone" in phone.reason
    assert name.outcome is Outcome.HELD and "name" in name.reason
    assert fine.outcome is Outcome.INGESTED
    assert pipeline.case_store.count() == 1


def test_consent_is_checked_again_at_upsert(container: Container) -> None:
    """A withdrawal landing while the image is being embedded wins: nothing is stored."""
    pipeline = container.ingest_pipeline
    ledger = pipeline.consent_ledger
    ledger.grant(ALICE, GUILD, "server")
    real_encode = pipeline.encoder.encode_images

    def withdraw_during_embedding(images: Any) -> np.ndarray:
        ledger.withdraw(ALICE, GUILD)
        return real_encode(images)

    pipeline.encoder.encode_images = withdraw_during_embedding  # type: ignore[method-assign]
    try:
        [result] = pipeline.ingest([post(crops()[0], message=40)])
    finally:
        del pipeline.encoder.encode_images
    assert result.outcome is Outcome.NO_CONSENT
    assert pipeline.case_store.count() == 0 and not list(pipeline.thumbnails.ids())


def test_failed_upsert_leaves_no_thumbnail_and_orphans_are_swept(pipeline: IngestPipeline) -> None:
    pipeline.consent_ledger.grant(ALICE, GUILD, "server")

    def broken_upsert(records: Any) -> None:
        raise RuntimeError("disk full")

    pipeline.case_store.upsert = broken_upsert  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        pipeline.ingest([post(crops()[0], message=50)])
    del pipeline.case_store.upsert
    assert not list(pipeline.thumbnails.ids())
    pipeline.thumbnails.put("3f1c1d7e-0000-4000-8000-000000000000", solid())  # as if a crash hit mid-way
    assert pipeline.sweep_orphan_thumbnails() == 1 and not list(pipeline.thumbnails.ids())


def test_withdrawal_removes_every_trace(container: Container) -> None:
    pipeline = container.ingest_pipeline
    ledger = pipeline.consent_ledger
    ledger.grant(ALICE, GUILD, "server")
    ledger.grant(BOB, GUILD, "server")
    images = crops()
    alice = pipeline.ingest(
        [
            post(images[0], message=60, caption="mucinous adenocarcinoma"),
            post(images[1], message=61, caption="lymph node"),
        ]
    )
    bob = pipeline.ingest([post(images[2], message=62, author=BOB, caption="lymph node too")])
    assert all(r.outcome is Outcome.INGESTED for r in [*alice, *bob])
    search = container.similar_search
    before = search.by_image(images[0], guild_id=GUILD, k=10)
    assert alice[0].point_id in {h.id for h in before}

    report = forget_user(
        consent_ledger=ledger, stores=container.user_data_stores(), user_id=ALICE, guild_id=GUILD
    )

    assert report.cases == 2
    for query in (
        search.by_image(images[0], guild_id=GUILD, k=10),
        search.by_text("lymph node", guild_id=GUILD, k=10),
        search.captions_for_image(images[1], guild_id=GUILD, k=10),
    ):
        assert {h.author_id for h in query} == {BOB}
    assert pipeline.case_store.get([r.point_id for r in alice]) == []
    assert set(pipeline.thumbnails.ids()) == {bob[0].point_id}
    deletion = [e for e in ledger.audit(user_id=ALICE) if e.action is AuditAction.DELETE]
    assert deletion and deletion[-1].detail is not None and deletion[-1].detail["points_deleted"] == 2
    [later] = pipeline.ingest([post(images[3], message=63)])
    assert later.outcome is Outcome.NO_CONSENT


def test_one_servers_private_cases_never_reach_another(container: Container) -> None:
    pipeline = container.ingest_pipeline
    pipeline.consent_ledger.grant(ALICE, GUILD, "server")
    pipeline.consent_ledger.grant(BOB, GUILD, "shared")
    images = crops()
    # GUILD chose to share; consent decides per user.
    container.guild_config.set_sharing(GUILD, True, actor_id=1)
    private, shared = pipeline.ingest([post(images[0], message=70), post(images[1], message=71, author=BOB)])
    seen_by_other = {h.id for h in container.similar_search.by_image(images[0], guild_id=OTHER_GUILD, k=10)}
    seen_by_own = {h.id for h in container.similar_search.by_image(images[0], guild_id=GUILD, k=10)}
    assert seen_by_other == {shared.point_id}
    assert seen_by_own == {private.point_id, shared.point_id}
    own_post_excluded = container.similar_search.by_image(
        images[0], guild_id=GUILD, k=10, exclude_message_id=70
    )
    assert private.point_id not in {h.id for h in own_post_excluded}
    # Sharing off: other servers stop seeing the shared case at once, before any re-scope.
    container.guild_config.set_sharing(GUILD, False, actor_id=1)
    assert container.similar_search.by_image(images[0], guild_id=OTHER_GUILD, k=10) == []


def test_pathology_gate_threshold_and_skip(
    container: Container, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    strict = Container(
        load_settings(
            data_dir=tmp_path / "strict", model={"name": str(tiny_checkpoint)}, ingest={"gate_threshold": 1.0}
        )
    )
    try:
        pipeline = strict.ingest_pipeline
        pipeline.consent_ledger.grant(ALICE, GUILD, "server")
        [gated] = pipeline.ingest([post(crops()[0], message=80)])
        assert gated.outcome is Outcome.REJECTED and "not a pathology image" in gated.reason
        [skipped] = pipeline.ingest([post(crops()[0], message=80)], skip_gate=True)
        assert skipped.outcome is Outcome.INGESTED
    finally:
        strict.close()
    lenient = container.ingest_pipeline
    assert lenient.gate is not None and lenient.gate.threshold == 0.0
    probs = lenient.gate.check(lenient.encoder.encode_images(crops()[:2]))
    assert all(0.0 <= v.pathology_probability <= 1.0 for v in probs)


def test_search_filter_keeps_scope_rules_for_dms(container: Container) -> None:
    pipeline = container.ingest_pipeline
    pipeline.consent_ledger.grant(ALICE, GUILD, "server")
    pipeline.ingest([post(crops()[0], message=90)])
    hits = pipeline.case_store.search(
        pipeline.encoder.encode_images([crops()[0]])[0],
        using="image",
        k=5,
        filter=SearchFilter(guild_id=None),
    )
    assert hits == []  # no server context (a DM or the CLI without --guild): shared cases only
    assert ConsentScope.SERVER.value == "server"


def test_the_pipeline_reads_the_servers_sharing_when_it_stores(container: Container) -> None:
    """No snapshot travels with the post: the guild configuration is read at upsert time."""
    pipeline = container.ingest_pipeline
    pipeline.consent_ledger.grant(BOB, GUILD, "shared")
    images = crops()
    container.guild_config.set_sharing(GUILD, True, actor_id=1)
    shared = pipeline.ingest([post(images[0], message=95, author=BOB)])[0]
    container.guild_config.set_sharing(GUILD, False, actor_id=1)
    private = pipeline.ingest([post(images[1], message=96, author=BOB)])[0]
    scopes = {r.id: r.payload.scope for r in pipeline.case_store.get([shared.point_id, private.point_id])}
    assert scopes == {shared.point_id: "shared", private.point_id: "server"}


def test_a_consent_narrowed_while_the_case_is_written_is_not_left_shared(container: Container) -> None:
    """The author narrows to 'server' after the upsert read their consent but before the point exists, and
    the re-scope task (another worker) runs in that window, so it cannot see the point: the pipeline's
    own re-check after the write must stamp it 'server', or it stays in the shared corpus."""
    from ingest.scoping import rescope_user

    pipeline = container.ingest_pipeline
    ledger = pipeline.consent_ledger
    ledger.grant(ALICE, GUILD, "shared")
    container.guild_config.set_sharing(GUILD, True, actor_id=1)
    checks: list[int] = []

    def shares_then_narrow(guild_id: int) -> bool:
        checks.append(guild_id)
        if len(checks) == 2:  # the upsert's consent check (the first one is on arrival)
            ledger.grant(ALICE, GUILD, "server")
            rescope_user(
                case_stores=[pipeline.case_store],
                consent_ledger=ledger,
                user_id=ALICE,
                guild_id=GUILD,
                guild_shares=True,
            )
        return True

    pipeline.guild_shares = shares_then_narrow
    [result] = pipeline.ingest([post(crops()[0], message=97)])
    assert result.outcome is Outcome.INGESTED and len(checks) >= 2
    [record] = pipeline.case_store.get([result.point_id])
    assert record.payload.scope == "server"
    elsewhere = SearchFilter(guild_id=OTHER_GUILD, sharing_guilds=frozenset({GUILD}))
    assert pipeline.case_store.count(elsewhere) == 0
