"""One suite, every backend: the embedded store and the server store must give the same answers.

Like qdrant-client's congruence tests, each test runs unchanged against `EdgeCaseStore` (a shard in
tmp_path) and `ServerCaseStore` (the same client code a server gets, on `QdrantClient(":memory:")`).
Vectors are small and hand-made, so every expected cosine is known exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from plipbot.errors import PlipbotError, ServiceUnavailableError, StoreError
from plipbot.settings import Settings, StoreSettings
from store import (
    CasePayload,
    CaseRecord,
    CaseStore,
    ModelKey,
    SearchFilter,
    build_case_store,
    case_point_id,
    collection_name,
    import_point_id,
)
from store.edge import EdgeCaseStore
from store.server import UNREACHABLE_MESSAGE, ServerCaseStore

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
PLIP = ModelKey("plip", "67ade53d" + "0" * 32)
CLIP = ModelKey("hf-hub:openai/clip-vit-base-patch32", "main")
GUILD_A = 1_000_000_000_000_000_001
GUILD_B = 1_000_000_000_000_000_002
AUTHOR = 555
OTHER_AUTHOR = 777
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BOTH = frozenset({GUILD_A, GUILD_B})

OpenStore = Callable[..., CaseStore]


def basis(index: int, dim: int = DIM) -> list[float]:
    """Unit vector along axis `index`."""
    vector = [0.0] * dim
    vector[index] = 1.0
    return vector


def blend(cosine: float, dim: int = DIM) -> list[float]:
    """Unit vector with the given cosine to axis 0 (the rest on axis 1)."""
    vector = [0.0] * dim
    vector[0] = cosine
    vector[1] = math.sqrt(1.0 - cosine * cosine)
    return vector


def make_case(
    attachment: int,
    image: list[float],
    *,
    text: list[float] | None = None,
    guild: int = GUILD_A,
    message: int | None = None,
    author: int = AUTHOR,
    scope: str = "server",
    phash: str = "f0f0f0f0f0f0f0f0",
    created_at: datetime = T0,
    model: ModelKey = PLIP,
) -> CaseRecord:
    message_id = message if message is not None else 10_000 + attachment
    return CaseRecord(
        id=case_point_id(guild, message_id, attachment),
        payload=CasePayload(
            guild_id=guild,
            channel_id=42,
            message_id=message_id,
            attachment_id=attachment,
            jump_link=f"https://discord.com/channels/{guild}/42/{message_id}",
            author_id=author,
            caption="" if text is None else f"caption {attachment}",
            tags=("ihc",),
            created_at=created_at,
            source="discord",
            scope=scope,  # type: ignore[arg-type]
            phash=phash,
            model=model.name,
            revision=model.revision,
        ),
        image_vector=image,
        text_vector=text,
    )


@pytest.fixture(params=["edge", "server"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores of one backend; calling it again reaches the same data (a reopen)."""
    client = QdrantClient(":memory:") if request.param == "server" else None
    opened: list[CaseStore] = []

    def open_(model: ModelKey = PLIP) -> CaseStore:
        store: CaseStore = (
            EdgeCaseStore(tmp_path / "store", model) if client is None else ServerCaseStore(client, model)
        )
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if client is not None:
        client.close()


@pytest.fixture
def case_store(open_store: OpenStore) -> CaseStore:
    store = open_store()
    store.ensure_collection(DIM)
    return store


def ids_of(hits: list) -> list[str]:
    return [hit.id for hit in hits]


def assert_same_cases(stored: list[CaseRecord], expected: list[CaseRecord]) -> None:
    """Equal ids and payloads; vectors equal up to the float32 rounding both engines store them with."""
    assert [case.id for case in stored] == [case.id for case in expected]
    for got, want in zip(stored, expected, strict=True):
        assert got.payload == want.payload
        assert got.image_vector == pytest.approx(want.image_vector, abs=1e-6)
        if want.text_vector is None:
            assert got.text_vector is None
        else:
            assert got.text_vector == pytest.approx(want.text_vector, abs=1e-6)


# -- collection lifecycle -------------------------------------------------------------------------


def test_ensure_collection_is_idempotent_and_checks_dimension(open_store: OpenStore) -> None:
    store = open_store()
    assert store.dim is None
    store.ensure_collection(DIM)
    store.ensure_collection(DIM)
    assert store.dim == DIM
    assert store.count() == 0
    with pytest.raises(StoreError):
        store.ensure_collection(DIM * 2)


def test_reads_before_the_collection_exists_are_empty_and_writes_fail(open_store: OpenStore) -> None:
    store = open_store()
    assert store.search(basis(0), k=3, filter=SearchFilter(guild_id=GUILD_A)) == []
    assert store.count() == 0
    assert store.get([case_point_id(GUILD_A, 1, 1)]) == []
    assert store.delete_where(author_id=AUTHOR) == []
    with pytest.raises(StoreError):
        store.upsert([make_case(1, basis(0))])


def test_closed_store_raises_store_error(open_store: OpenStore) -> None:
    store = open_store()
    store.ensure_collection(DIM)
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.count()


# -- writes and reads -----------------------------------------------------------------------------


def test_upserting_the_same_id_twice_keeps_one_point(case_store: CaseStore) -> None:
    first = make_case(1, basis(0))
    case_store.upsert([first])
    edited = make_case(1, basis(1), text=basis(2))
    case_store.upsert([edited])
    case_store.upsert([edited])
    assert case_store.count() == 1
    assert_same_cases(case_store.get([first.id]), [edited])


def test_get_keeps_requested_order_and_skips_missing(case_store: CaseStore) -> None:
    cases = [make_case(n, basis(n % DIM), text=basis((n + 1) % DIM) if n % 2 else None) for n in range(5)]
    case_store.upsert(cases)
    missing = case_point_id(GUILD_B, 1, 1)
    wanted = [cases[3].id, missing, cases[0].id, cases[3].id.upper()]
    assert_same_cases(case_store.get(wanted), [cases[3], cases[0]])
    assert case_store.count() == 5


def test_count_with_a_filter_counts_what_the_guild_may_see(case_store: CaseStore) -> None:
    case_store.upsert(
        [
            make_case(1, basis(0), guild=GUILD_A),
            make_case(2, basis(1), guild=GUILD_A, scope="shared"),
            make_case(3, basis(2), guild=GUILD_B),
        ]
    )
    assert case_store.count() == 3
    assert case_store.count(SearchFilter(guild_id=GUILD_A, sharing_guilds=BOTH)) == 2
    assert case_store.count(SearchFilter(guild_id=GUILD_B, sharing_guilds=BOTH)) == 2
    assert case_store.count(SearchFilter(guild_id=None, sharing_guilds=BOTH)) == 1
    assert case_store.count(SearchFilter(guild_id=GUILD_B)) == 1
    assert case_store.count(SearchFilter(guild_id=None)) == 0


def test_delete_by_id_ignores_unknown_ids(case_store: CaseStore) -> None:
    cases = [make_case(n, basis(n)) for n in range(3)]
    case_store.upsert(cases)
    case_store.delete([cases[1].id, case_point_id(GUILD_B, 9, 9)])
    assert_same_cases(case_store.get([case.id for case in cases]), [cases[0], cases[2]])


def test_delete_where_author_returns_the_deleted_ids(case_store: CaseStore) -> None:
    mine = [make_case(1, basis(0)), make_case(2, basis(1), guild=GUILD_B, scope="shared")]
    theirs = make_case(3, basis(2), author=OTHER_AUTHOR)
    case_store.upsert([*mine, theirs])
    deleted = case_store.delete_where(author_id=AUTHOR)
    assert deleted == sorted(case.id for case in mine)
    assert_same_cases(case_store.get([case.id for case in [*mine, theirs]]), [theirs])
    assert case_store.delete_where(author_id=AUTHOR) == []


def test_delete_where_author_and_guild_leaves_other_guilds(case_store: CaseStore) -> None:
    in_a = make_case(1, basis(0), guild=GUILD_A)
    in_b = make_case(2, basis(1), guild=GUILD_B)
    case_store.upsert([in_a, in_b])
    assert case_store.delete_where(author_id=AUTHOR, guild_id=GUILD_A) == [in_a.id]
    assert_same_cases(case_store.get([in_a.id, in_b.id]), [in_b])
    with pytest.raises(ValueError):
        case_store.delete_where(scope="shared")


def test_find_by_phash_matches_exactly_within_the_guild(case_store: CaseStore) -> None:
    original = make_case(1, basis(0), phash="abcdef0123456789")
    other_guild = make_case(2, basis(0), guild=GUILD_B, phash="abcdef0123456789")
    different = make_case(3, basis(0), phash="abcdef0123456788")
    case_store.upsert([original, other_guild, different])
    assert_same_cases(case_store.find_by_phash(GUILD_A, "ABCDEF0123456789"), [original])
    assert case_store.find_by_phash(GUILD_A, "0000") == []


# -- search ---------------------------------------------------------------------------------------


def test_search_orders_by_cosine_and_reports_it(case_store: CaseStore) -> None:
    cosines = [0.6, 1.0, -0.6, 0.8, 0.0]
    cases = [make_case(n, blend(cosine)) for n, cosine in enumerate(cosines)]
    case_store.upsert(cases)
    hits = case_store.search([3.0] + [0.0] * (DIM - 1), k=4, filter=SearchFilter(guild_id=GUILD_A))
    assert ids_of(hits) == [cases[1].id, cases[3].id, cases[0].id, cases[4].id]
    assert [hit.score for hit in hits] == pytest.approx([1.0, 0.8, 0.6, 0.0], abs=1e-5)
    assert hits[0].payload == cases[1].payload


def test_the_three_search_modes_use_the_named_vector(case_store: CaseStore) -> None:
    # Images on axes 0-1, captions on axes 2-3; the third case has no caption, hence no text vector.
    with_caption = make_case(1, basis(0), text=basis(2))
    other_caption = make_case(2, basis(1), text=basis(3))
    no_caption = make_case(3, blend(0.8))
    case_store.upsert([with_caption, other_caption, no_caption])
    visible = SearchFilter(guild_id=GUILD_A)

    image_query = basis(0)  # image -> image
    assert ids_of(case_store.search(image_query, using="image", k=3, filter=visible)) == [
        with_caption.id,
        no_caption.id,
        other_caption.id,
    ]
    text_query = basis(1)  # a text embedding (same CLIP space) -> images
    assert ids_of(case_store.search(text_query, using="image", k=2, filter=visible)) == [
        other_caption.id,
        no_caption.id,
    ]
    caption_like_image = basis(3)  # image -> what similar cases say: the caption vectors only
    hits = case_store.search(caption_like_image, using="text", k=5, filter=visible)
    assert ids_of(hits) == [other_caption.id, with_caption.id]
    assert [hit.score for hit in hits] == pytest.approx([1.0, 0.0], abs=1e-5)


def test_a_case_without_caption_is_found_by_image_only(case_store: CaseStore) -> None:
    silent = make_case(1, basis(0))
    case_store.upsert([silent])
    assert case_store.get([silent.id])[0].text_vector is None
    visible = SearchFilter(guild_id=GUILD_A)
    assert ids_of(case_store.search(basis(0), k=3, filter=visible)) == [silent.id]
    assert case_store.search(basis(0), using="text", k=3, filter=visible) == []


def test_guild_isolation_private_cases_never_cross_guilds(case_store: CaseStore) -> None:
    private_a = make_case(1, basis(0), guild=GUILD_A)
    shared_a = make_case(2, blend(0.9), guild=GUILD_A, scope="shared")
    private_b = make_case(3, blend(0.95), guild=GUILD_B)
    shared_b = make_case(4, blend(0.5), guild=GUILD_B, scope="shared")
    case_store.upsert([private_a, shared_a, private_b, shared_b])
    query = basis(0)

    def seen(guild: int | None, sharing: frozenset[int] = BOTH) -> list[str]:
        visible = SearchFilter(guild_id=guild, sharing_guilds=sharing)
        return ids_of(case_store.search(query, k=10, filter=visible))

    assert seen(GUILD_B) == [private_b.id, shared_a.id, shared_b.id]
    assert seen(GUILD_A) == [private_a.id, shared_a.id, shared_b.id]
    assert seen(None) == [shared_a.id, shared_b.id]
    # A server whose sharing is off now hides its cases still stamped shared (a missed re-scope).
    assert seen(GUILD_B, frozenset({GUILD_B})) == [private_b.id, shared_b.id]
    assert seen(None, frozenset({GUILD_B})) == [shared_b.id]
    assert seen(GUILD_A, frozenset()) == [private_a.id, shared_a.id]
    assert seen(None, frozenset()) == []


def test_rescope_rewrites_the_scope_of_a_guild_or_an_author(case_store: CaseStore) -> None:
    later = T0 + timedelta(days=1)
    cases = [
        make_case(1, basis(0), scope="shared"),
        make_case(2, basis(1), scope="shared", author=OTHER_AUTHOR),
        make_case(3, basis(2), scope="shared", created_at=later),
        make_case(4, basis(3), guild=GUILD_B, scope="shared"),
    ]
    case_store.upsert(cases)
    assert case_store.rescope("server", guild_id=GUILD_A, author_id=AUTHOR) == 2
    assert case_store.rescope("server", guild_id=GUILD_A, author_id=AUTHOR) == 0  # idempotent
    scopes = {record.id: record.payload.scope for record in case_store.get([c.id for c in cases])}
    assert [scopes[c.id] for c in cases] == ["server", "shared", "server", "shared"]
    assert case_store.rescope("shared", guild_id=GUILD_A, author_id=AUTHOR, created_from=later) == 1
    assert case_store.get([cases[0].id])[0].payload.scope == "server"
    assert case_store.get([cases[2].id])[0].payload.scope == "shared"
    assert case_store.rescope("server", guild_id=GUILD_A) == 2
    shared_now = SearchFilter(guild_id=None, sharing_guilds=BOTH)
    assert ids_of(case_store.search(basis(3), k=10, filter=shared_now)) == [cases[3].id]
    # The rest of each payload and the vectors are untouched.
    [rescoped] = case_store.get([cases[2].id])
    assert rescoped.payload.model_copy(update={"scope": "shared"}) == cases[2].payload
    assert_same_cases([rescoped], [CaseRecord(cases[2].id, rescoped.payload, cases[2].image_vector)])


def test_ids_where_finds_the_cases_of_deleted_messages(case_store: CaseStore) -> None:
    cases = [
        make_case(1, basis(0), message=900),
        make_case(2, basis(1), message=900),
        make_case(3, basis(2), message=901),
        make_case(4, basis(3), message=900, guild=GUILD_B),
    ]
    case_store.upsert(cases)
    assert case_store.ids_where(guild_id=GUILD_A, message_ids=[900]) == sorted([cases[0].id, cases[1].id])
    in_a = case_store.ids_where(guild_id=GUILD_A, message_ids=[900, 901, 5])
    assert in_a == sorted(c.id for c in cases[:3])
    assert case_store.ids_where(guild_id=GUILD_A, message_ids=[]) == []
    with pytest.raises(ValueError, match="needs"):
        case_store.ids_where()


def test_search_excludes_the_query_s_own_message(case_store: CaseStore) -> None:
    own_first = make_case(1, basis(0), message=900)
    own_second = make_case(2, basis(0), message=900)
    other = make_case(3, blend(0.7), message=901)
    case_store.upsert([own_first, own_second, other])
    hits = case_store.search(basis(0), k=5, filter=SearchFilter(guild_id=GUILD_A, exclude_message_id=900))
    assert ids_of(hits) == [other.id]
    assert case_store.count(SearchFilter(guild_id=GUILD_A, exclude_message_id=900)) == 1


def test_excluding_a_message_with_many_cases_still_returns_k(case_store: CaseStore) -> None:
    # More cases than a Discord message can carry, so the first over-fetch is all own cases.
    own = [make_case(n, blend(0.99 - 0.001 * n), message=900) for n in range(14)]
    others = [make_case(100 + n, blend(0.5 - 0.1 * n), message=901 + n) for n in range(3)]
    case_store.upsert([*own, *others])
    hits = case_store.search(basis(0), k=2, filter=SearchFilter(guild_id=GUILD_A, exclude_message_id=900))
    assert ids_of(hits) == [others[0].id, others[1].id]


def test_collapse_keeps_the_best_of_near_identical_reposts(case_store: CaseStore) -> None:
    reposts = [make_case(n, blend(0.99 - 0.001 * n)) for n in range(6)]  # all within cosine 0.9999
    distinct = make_case(10, blend(0.3))
    far = make_case(11, blend(-0.2))
    case_store.upsert([*reposts, distinct, far])
    query = basis(0)

    plain = case_store.search(query, k=3, filter=SearchFilter(guild_id=GUILD_A))
    assert ids_of(plain) == [reposts[0].id, reposts[1].id, reposts[2].id]
    # k=2 fetches 8 candidates, exactly the 6 reposts + 2 others; k=3 must fetch again to find `far`.
    collapsed = case_store.search(query, k=3, filter=SearchFilter(guild_id=GUILD_A, collapse_cosine=0.95))
    assert ids_of(collapsed) == [reposts[0].id, distinct.id, far.id]
    assert collapsed[1].score == pytest.approx(0.3, abs=1e-5)
    single = case_store.search(query, k=1, filter=SearchFilter(guild_id=GUILD_A, collapse_cosine=0.95))
    assert ids_of(single) == [reposts[0].id]


def test_collapse_compares_images_even_when_searching_captions(case_store: CaseStore) -> None:
    first = make_case(1, basis(0), text=basis(2))
    repost = make_case(2, basis(0), text=basis(3))
    case_store.upsert([first, repost])
    hits = case_store.search(
        basis(3), using="text", k=2, filter=SearchFilter(guild_id=GUILD_A, collapse_cosine=0.95)
    )
    assert ids_of(hits) == [repost.id]


def test_search_filters_on_creation_time(case_store: CaseStore) -> None:
    old = make_case(1, basis(0), created_at=T0 - timedelta(days=30))
    new = make_case(2, blend(0.5), created_at=T0 + timedelta(hours=1))
    case_store.upsert([old, new])
    recent = SearchFilter(guild_id=GUILD_A, created_from=T0)
    assert ids_of(case_store.search(basis(0), k=5, filter=recent)) == [new.id]
    before = SearchFilter(guild_id=GUILD_A, created_before=T0 + timedelta(hours=1))
    assert ids_of(case_store.search(basis(0), k=5, filter=before)) == [old.id]


def test_search_rejects_bad_arguments(case_store: CaseStore) -> None:
    visible = SearchFilter(guild_id=GUILD_A)
    with pytest.raises(ValueError):
        case_store.search(basis(0), k=0, filter=visible)
    with pytest.raises(ValueError):
        case_store.search(basis(0, dim=DIM + 1), k=1, filter=visible)
    with pytest.raises(ValueError):
        case_store.search([0.0] * DIM, k=1, filter=visible)


# -- persistence and collections ------------------------------------------------------------------


def test_a_reopened_store_finds_what_was_written(open_store: OpenStore) -> None:
    cases = [make_case(n, blend(1.0 - 0.1 * n), text=basis(3)) for n in range(4)]
    with open_store() as store:
        store.ensure_collection(DIM)
        store.upsert(cases)
        before = store.search(basis(0), k=4, filter=SearchFilter(guild_id=GUILD_A))
    reopened = open_store()
    assert reopened.dim == DIM
    assert reopened.count() == 4
    assert_same_cases(reopened.get([cases[2].id]), [cases[2]])
    assert reopened.search(basis(0), k=4, filter=SearchFilter(guild_id=GUILD_A)) == before


def test_model_collections_do_not_mix(open_store: OpenStore) -> None:
    plip_store = open_store(PLIP)
    clip_store = open_store(CLIP)
    assert plip_store.collection == "cases__plip__67ade53d"
    assert clip_store.collection == "cases__hf_hub_openai_clip_vit_base_patch32__main"
    plip_store.ensure_collection(DIM)
    clip_store.ensure_collection(2 * DIM)
    plip_case = make_case(1, basis(0))
    clip_case = make_case(2, basis(0, dim=2 * DIM), model=CLIP)
    plip_store.upsert([plip_case])
    clip_store.upsert([clip_case])
    assert ids_of(plip_store.search(basis(0), k=5, filter=None)) == [plip_case.id]
    assert ids_of(clip_store.search(basis(0, dim=2 * DIM), k=5, filter=None)) == [clip_case.id]
    assert plip_store.get([clip_case.id]) == []
    with pytest.raises(ValueError):
        plip_store.upsert([make_case(3, basis(0), model=ModelKey("plip", "another-revision"))])


# -- backend-specific -----------------------------------------------------------------------------


def test_edge_shard_opens_in_one_store_at_a_time(tmp_path: Path) -> None:
    with EdgeCaseStore(tmp_path, PLIP) as first:
        first.ensure_collection(DIM)
        with pytest.raises(StoreError, match="another process"):
            EdgeCaseStore(tmp_path, PLIP)
    with EdgeCaseStore(tmp_path, PLIP) as again:
        assert again.dim == DIM


def test_unreachable_server_is_service_unavailable() -> None:
    started = time.monotonic()
    client = QdrantClient(url="http://127.0.0.1:1", timeout=1, check_compatibility=False)
    with ServerCaseStore(client, PLIP, owns_client=True) as store:
        with pytest.raises(ServiceUnavailableError) as raised:
            store.ensure_collection(DIM)
        assert str(raised.value) == UNREACHABLE_MESSAGE
        with pytest.raises(ServiceUnavailableError):
            store.search(basis(0), k=3, filter=SearchFilter(guild_id=GUILD_A))
    with (
        ServerCaseStore.connect("http://127.0.0.1:1", PLIP, timeout_s=1) as store,
        pytest.raises(PlipbotError),
    ):
        store.count()
    assert time.monotonic() - started < 10


def test_factory_picks_the_backend_from_settings(tmp_path: Path) -> None:
    embedded = build_case_store(Settings(data_dir=tmp_path), PLIP)
    with embedded:
        assert isinstance(embedded, EdgeCaseStore)
        assert embedded.path == tmp_path / "store" / "cases__plip__67ade53d"
    remote = build_case_store(
        Settings(data_dir=tmp_path, store=StoreSettings(url="http://127.0.0.1:1")), PLIP
    )
    with remote:
        assert isinstance(remote, ServerCaseStore)


# -- records, names and ids --------------------------------------------------------------------------------


def test_collection_names_are_sanitised() -> None:
    assert collection_name("plip", "67ade53d") == "cases__plip__67ade53d"
    assert collection_name("PLIP", "67ADE53D" + "f" * 32) == "cases__plip__67ade53d"
    assert collection_name("local-dir:/models/my ckpt", "v1.2") == "cases__local_dir_models_my_ckpt__v1_2"
    long_name = collection_name("x" * 200, "main")
    assert len(long_name) < 80
    assert long_name != collection_name("x" * 199 + "y", "main")
    with pytest.raises(ValueError):
        collection_name("///", "main")


def test_point_ids_are_deterministic_uuid5() -> None:
    assert case_point_id(1, 2, 3) == case_point_id(1, 2, 3)
    assert case_point_id(1, 2, 3) != case_point_id(1, 2, 4)
    assert case_point_id(1, 2, 3)[14] == "5"
    assert import_point_id("tcga", "a/b.png") == import_point_id("tcga", "./a/b.png")
    assert import_point_id("tcga", "a\\b.png") == import_point_id("tcga", Path("a/b.png"))
    assert import_point_id("tcga", "a/b.png") != import_point_id("other", "a/b.png")
    for bad in ("/abs/b.png", "../b.png", ""):
        with pytest.raises(ValueError):
            import_point_id("tcga", bad)


def test_records_validate_their_vectors() -> None:
    record = make_case(1, [0.0, 3.0, 4.0], text=(1, 0, 0))
    assert record.image_vector.dtype == "float32"
    assert not record.image_vector.flags.writeable
    assert record == make_case(1, [0.0, 3.0, 4.0], text=[1.0, 0.0, 0.0])
    assert record != make_case(1, [0.0, 3.0, 4.0])
    for bad_image, bad_text in (
        ([0.0, 0.0], None),
        ([1.0, float("nan")], None),
        ([[1.0, 0.0]], None),
        ([], None),
        ([1.0, 0.0], [1.0, 0.0, 0.0]),
    ):
        with pytest.raises(ValueError):
            make_case(1, bad_image, text=bad_text)


def test_payloads_need_aware_times_and_hex_hashes() -> None:
    with pytest.raises(ValueError):
        make_case(1, basis(0), created_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        make_case(1, basis(0), phash="not-hex")
    local = make_case(1, basis(0), created_at=datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))))
    assert local.payload.to_storage()["created_at"] == "2024-01-01T12:00:00Z"


def test_purge_leaves_no_trace_of_deleted_cases_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with EdgeCaseStore(root, PLIP) as store:
        store.ensure_collection(DIM)
        kept, erased = make_case(1, basis(0), text=basis(1)), make_case(2, basis(2), text=basis(3))
        store.upsert([kept, erased])
        store.delete([erased.id])
        store.purge_deleted()
        files = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
        assert b"caption 2" not in files and b"caption 1" in files
        assert ids_of(store.search(basis(0), k=5, filter=SearchFilter(guild_id=GUILD_A))) == [kept.id]
        store.upsert([erased])  # still writable after the swap
    with EdgeCaseStore(root, PLIP) as reopened:
        assert reopened.count() == 2
        assert reopened.count(SearchFilter(guild_id=GUILD_A)) == 2  # payload indexes rebuilt too


def test_a_purge_cut_short_between_its_renames_is_undone_on_open(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with EdgeCaseStore(root, PLIP) as store:
        store.ensure_collection(DIM)
        store.upsert([make_case(1, basis(0))])
        path = store.path
    path.rename(path.with_name(path.name + ".old"))  # as if killed after the first rename
    (path.with_name(path.name + ".rebuild")).mkdir()
    with EdgeCaseStore(root, PLIP) as reopened:
        assert reopened.count() == 1
    assert not path.with_name(path.name + ".old").exists()
    assert not path.with_name(path.name + ".rebuild").exists()


def test_purge_is_harmless_on_the_server_store() -> None:
    client = QdrantClient(":memory:")
    with ServerCaseStore(client, PLIP) as store:
        store.ensure_collection(DIM)
        store.upsert([make_case(1, basis(0))])
        store.purge_deleted()
        assert store.count() == 1
    client.close()
