"""Similar-case search: what the bot's "similar cases" and `plipbot search` ask the corpus.

Three modes over one collection (see `CaseStore.search`): image -> image ("cases that look like
this"), text -> image ("show me signet ring cell carcinoma"), and image -> text ("what do similar
cases say": captions nearest the image). The privacy rule (own server plus shared cases only) and the
near-duplicate collapse come from `SearchFilter`, so every caller gets them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from PIL import Image

from store.base import CaseStore
from store.records import CaseHit, SearchFilter

COLLAPSE_COSINE = 0.95


class QueryEncoder(Protocol):
    """The encoder half a search needs."""

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class SimilarCase:
    """One result as people see it."""

    id: str
    score: float
    caption: str
    source: str
    link: str | None
    guild_id: int
    author_id: int | None
    scope: str
    tags: tuple[str, ...]

    @classmethod
    def from_hit(cls, hit: CaseHit) -> SimilarCase:
        p = hit.payload
        return cls(
            hit.id, hit.score, p.caption, p.source, p.jump_link, p.guild_id, p.author_id, p.scope, p.tags
        )

    def as_dict(self) -> dict[str, object]:
        """JSON form (`plipbot search --json`, task results)."""
        return {
            "id": self.id,
            "score": self.score,
            "caption": self.caption,
            "source": self.source,
            "link": self.link,
            "guild_id": self.guild_id,
            "author_id": self.author_id,
            "scope": self.scope,
            "tags": list(self.tags),
        }


class SimilarCaseSearch:
    """Embeds a query once and asks the case store, always through the privacy filter."""

    def __init__(
        self,
        encoder: QueryEncoder,
        case_store: CaseStore,
        *,
        sharing_guilds: Callable[[], frozenset[int]] = frozenset,
    ) -> None:
        """`sharing_guilds()`: the servers whose sharing is on now, asked at every search (see
        `SearchFilter.sharing_guilds`); the default shares nothing."""
        self.encoder = encoder
        self.case_store = case_store
        self.sharing_guilds = sharing_guilds

    def _filter(self, guild_id: int | None, exclude_message_id: int | None) -> SearchFilter:
        return SearchFilter(
            guild_id=guild_id,
            sharing_guilds=self.sharing_guilds(),
            exclude_message_id=exclude_message_id,
            collapse_cosine=COLLAPSE_COSINE,
        )

    def by_vector(
        self,
        vector: np.ndarray,
        *,
        using: Literal["image", "text"],
        guild_id: int | None,
        k: int = 5,
        exclude_message_id: int | None = None,
    ) -> list[SimilarCase]:
        """Search with an embedding the caller already has (workers embed once for suggest + search)."""
        hits = self.case_store.search(
            vector, using=using, k=k, filter=self._filter(guild_id, exclude_message_id)
        )
        return [SimilarCase.from_hit(h) for h in hits]

    def by_image(
        self, image: Image.Image, *, guild_id: int | None, k: int = 5, exclude_message_id: int | None = None
    ) -> list[SimilarCase]:
        """Cases whose images look like this one."""
        vector = self.encoder.encode_images([image])[0]
        return self.by_vector(
            vector, using="image", guild_id=guild_id, k=k, exclude_message_id=exclude_message_id
        )

    def by_text(self, text: str, *, guild_id: int | None, k: int = 5) -> list[SimilarCase]:
        """Cases whose images match a description."""
        vector = self.encoder.encode_texts([text])[0]
        return self.by_vector(vector, using="image", guild_id=guild_id, k=k)

    def captions_for_image(
        self, image: Image.Image, *, guild_id: int | None, k: int = 5, exclude_message_id: int | None = None
    ) -> list[SimilarCase]:
        """Cases whose captions match this image: what similar cases say."""
        vector = self.encoder.encode_images([image])[0]
        return self.by_vector(
            vector, using="text", guild_id=guild_id, k=k, exclude_message_id=exclude_message_id
        )
