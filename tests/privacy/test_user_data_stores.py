"""The composition root's one list of stores that hold user data (`Container.user_data_stores`)."""

from __future__ import annotations

from pathlib import Path

from plipbot.composition import Container
from plipbot.settings import Settings
from plipbot.user_data import UserDataStore
from store.edge import EdgeCaseStore
from store.factory import EMBEDDED_STORE_DIRNAME
from store.records import ModelKey


def test_every_store_of_user_data_is_listed_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for key in (ModelKey("plip", "v1"), ModelKey("clip", "v2")):  # two models' collections
        with EdgeCaseStore(data_dir / EMBEDDED_STORE_DIRNAME, key) as store:
            store.ensure_collection(4)
    embedded = Container(Settings(data_dir=data_dir))
    brokered = Container(
        Settings(data_dir=tmp_path / "other", broker_url="redis://127.0.0.1:6379/0")  # type: ignore[call-arg]
    )
    try:
        stores = embedded.user_data_stores()
        assert all(isinstance(store, UserDataStore) for store in stores)
        names = [store.store_name for store in stores]
        collections = ["cases:cases__clip__v2", "cases:cases__plip__v1"]
        assert sorted(names) == [*collections, "examples", "feedback", "notices"]
        # Behind a broker, stored task results are a store too (embedded mode stores none).
        assert "task-results" in [store.store_name for store in brokered.user_data_stores()]
    finally:
        embedded.close()
        brokered.close()
