"""The ingest pipeline: fetch -> validate -> clean -> screen -> dedup -> embed -> upsert.

Each stage is a small function from the modules beside this one; this module only orders them and
owns the two rules that span stages:

* Consent is checked when the post arrives *and again at the moment of the upsert*, and once more
  after it: a withdrawal that lands while an image is being embedded wins, and a point written in that
  window is removed again. Nothing enters the corpus without a recorded consent (or, for bulk imports,
  the operator's recorded import).
* Nothing half-written stays behind: the thumbnail is written first and deleted again if the vector
  upsert fails; a crash between the two leaves at most a thumbnail without a point, which
  `sweep_orphan_thumbnails` removes (bulk import runs it at start).

One bad image never stops a batch: every failure becomes an `IngestResult` with a one-line reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import numpy as np
from PIL import Image

from ingest.clean import CleanImage, clean_image
from ingest.consent_ledger import ConsentLedger, ConsentScope
from ingest.fetch import fetch_bytes
from ingest.gate import PathologyGate
from ingest.ocr import OcrSettings, OcrUnavailable, read_text
from ingest.phash import hamming, perceptual_hash
from ingest.phi import screen_image_text, screen_post, summarise
from model.identity import ModelIdentity
from model.images import ImageLimits, decode_image
from plipbot.errors import PlipbotError
from plipbot.settings import IngestSettings
from store.base import CaseStore
from store.records import CasePayload, CaseRecord, SearchFilter
from store.thumbnails import ThumbnailStore

log = logging.getLogger(__name__)

PHASH_DUPLICATE_BITS = 6
DEDUP_CANDIDATES = 8


class Encoder(Protocol):
    """What ingest needs from the model (ClipEncoder satisfies it)."""

    identity: ModelIdentity
    embed_dim: int

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class Outcome(StrEnum):
    """What happened to one image."""

    INGESTED = "ingested"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    HELD = "held"  # a possible identifier needs a person to look; nothing was stored
    NO_CONSENT = "no_consent"


@dataclass(frozen=True)
class PostImage:
    """One image of one post (or one imported file), with everything the payload needs.

    `scope` is set for bulk imports (the operator decides); for Discord posts it is None and comes
    from the author's consent and the server's sharing choice, both read at upsert time (never from a
    snapshot the message carried, which a moderator may have changed since).
    """

    point_id: str
    guild_id: int
    image: str | bytes  # an http(s) URL, a local path, or the bytes themselves
    created_at: datetime
    caption: str = ""
    tags: tuple[str, ...] = ()
    source: str = "discord"
    channel_id: int | None = None
    message_id: int | None = None
    attachment_id: int | None = None
    author_id: int | None = None
    jump_link: str | None = None
    scope: ConsentScope | None = None
    name: str = ""  # what to call it in a summary (file name or attachment name)


@dataclass(frozen=True)
class IngestResult:
    """The outcome for one image and, unless it was stored, why not."""

    point_id: str
    outcome: Outcome
    reason: str = ""
    duplicate_of: str | None = None
    name: str = ""


@dataclass
class _Prepared:
    post: PostImage
    clean: CleanImage
    phash: str
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


class IngestPipeline:
    """Runs posts through the stages and writes what passes into the case store."""

    def __init__(
        self,
        *,
        encoder: Encoder,
        case_store: CaseStore,
        thumbnails: ThumbnailStore,
        consent_ledger: ConsentLedger,
        settings: IngestSettings,
        gate: PathologyGate | None = None,
        guild_shares: Callable[[int], bool] = lambda _guild_id: False,
    ) -> None:
        """`guild_shares(guild_id)`: whether the server's sharing is on now (the guild configuration);
        the default shares nothing."""
        self.encoder = encoder
        self.case_store = case_store
        self.thumbnails = thumbnails
        self.consent_ledger = consent_ledger
        self.settings = settings
        self.gate = gate
        self.guild_shares = guild_shares
        self.ocr_settings = OcrSettings(timeout_s=settings.ocr_timeout_s, max_side=settings.ocr_max_side)
        self.limits = ImageLimits(
            max_bytes=settings.max_bytes,
            max_pixels=settings.max_pixels,
            max_concurrent_decodes=settings.decode_concurrency,
        )
        case_store.ensure_collection(encoder.embed_dim)

    # ------------------------------------------------------------------ consent

    def _scope_now(self, post: PostImage) -> ConsentScope | None:
        """The scope this post may be stored with right now, or None when it may not be stored."""
        if post.scope is not None:  # bulk import: the operator's recorded decision
            return post.scope
        if post.author_id is None:
            return None
        allowed = self.consent_ledger.allows(post.author_id, post.guild_id, post.created_at)
        if allowed is None:
            return None
        if allowed is ConsentScope.SHARED and self.guild_shares(post.guild_id):
            return ConsentScope.SHARED
        return ConsentScope.SERVER

    # ------------------------------------------------------------------ stages

    def _prepare(self, post: PostImage) -> _Prepared | IngestResult:
        """fetch -> validate -> screen (caption, tags, image text) -> clean; any failure is a result,
        not an exception."""
        try:
            data = (
                post.image
                if isinstance(post.image, bytes)
                else fetch_bytes(
                    post.image, max_bytes=self.limits.max_bytes, timeout_s=self.settings.fetch_timeout_s
                )
            )
            decoded = decode_image(data, self.limits)
        except PlipbotError as err:
            return IngestResult(post.point_id, Outcome.REJECTED, err.user_message, name=post.name)
        screened = self._screen(post, decoded.image)
        if screened is not None:
            return screened
        clean = clean_image(decoded)
        prepared = _Prepared(post, clean, perceptual_hash(clean.image))
        if decoded.frames > 1:
            prepared.notes.append(f"first of {decoded.frames} frames")
        return prepared

    def _screen(self, post: PostImage, image: Image.Image) -> IngestResult | None:
        """Caption and tags first (a likely identifier rejects, a possible one holds), then the text
        burned into the image (anything found holds: OCR misreads, so a person looks). None: clear.
        Results name the kinds found, never the text."""
        findings = screen_post(post.caption, post.tags)
        high = [f for f in findings if f.confidence == "high"]
        places = {f.where for f in findings}
        where = "caption" if places == {"caption"} else "tags" if places == {"tag"} else "caption and tags"
        if high:
            verb = "contains" if where == "caption" else "contain"
            return IngestResult(
                post.point_id,
                Outcome.REJECTED,
                f"{where} {verb} a likely identifier ({summarise(high)})",
                name=post.name,
            )
        if findings:
            return IngestResult(
                post.point_id,
                Outcome.HELD,
                f"{where} may contain an identifier ({summarise(findings)})",
                name=post.name,
            )
        if not self.settings.ocr:
            return None
        try:
            image_text = read_text(image, self.ocr_settings)
        except OcrUnavailable as err:
            if self.settings.ocr_unavailable == "skip":
                log.warning("image text not screened: %s", err)
                return None
            log.warning("image text not screened, post held: %s", err)
            return IngestResult(
                post.point_id,
                Outcome.HELD,
                "the text on the image could not be checked",
                name=post.name,
            )
        in_image = screen_image_text(image_text)
        if in_image:
            return IngestResult(
                post.point_id,
                Outcome.HELD,
                f"text on the image may contain an identifier ({summarise(in_image)})",
                name=post.name,
            )
        return None

    def _embed(self, batch: list[_Prepared], *, skip_gate: bool) -> list[_Prepared | IngestResult]:
        image_vectors = self.encoder.encode_images([p.clean.image for p in batch])
        captioned = [i for i, p in enumerate(batch) if p.post.caption.strip()]
        text_vectors = self.encoder.encode_texts([batch[i].post.caption.strip() for i in captioned])
        for row, index in enumerate(captioned):
            batch[index].text_vector = text_vectors[row]
        out: list[_Prepared | IngestResult] = []
        verdicts = self.gate.check(image_vectors) if self.gate is not None and not skip_gate else None
        for i, prepared in enumerate(batch):
            prepared.image_vector = image_vectors[i]
            if verdicts is not None and not verdicts[i].passed:
                post = prepared.post
                out.append(IngestResult(post.point_id, Outcome.REJECTED, verdicts[i].reason, name=post.name))
            else:
                out.append(prepared)
        return out

    def _find_duplicate(self, prepared: _Prepared) -> str | None:
        """An existing case of the same server that this image reposts: near-identical perceptual
        hash, or image cosine at or above `duplicate_cosine`."""
        post = prepared.post
        for record in self.case_store.find_by_phash(post.guild_id, prepared.phash):
            if record.id != post.point_id:
                return record.id
        assert prepared.image_vector is not None
        hits = self.case_store.search(
            prepared.image_vector,
            using="image",
            k=DEDUP_CANDIDATES,
            filter=SearchFilter(guild_id=post.guild_id),
        )
        for hit in hits:
            if hit.id == post.point_id or hit.payload.guild_id != post.guild_id:
                continue
            near_hash = hamming(hit.payload.phash, prepared.phash) <= PHASH_DUPLICATE_BITS
            if near_hash or hit.score >= self.settings.duplicate_cosine:
                return hit.id
        return None

    def _upsert(self, prepared: _Prepared) -> IngestResult:
        post = prepared.post
        scope = self._scope_now(post)  # checked at the moment of upsert, not only when queued
        if scope is None:
            return IngestResult(
                post.point_id, Outcome.NO_CONSENT, "the author has not consented", name=post.name
            )
        duplicate = self._find_duplicate(prepared)
        if duplicate is not None:
            return IngestResult(
                post.point_id,
                Outcome.DUPLICATE,
                "repost of an existing case",
                duplicate_of=duplicate,
                name=post.name,
            )
        assert prepared.image_vector is not None
        record = CaseRecord(
            id=post.point_id,
            payload=CasePayload(
                guild_id=post.guild_id,
                channel_id=post.channel_id,
                message_id=post.message_id,
                attachment_id=post.attachment_id,
                jump_link=post.jump_link,
                author_id=post.author_id,
                caption=post.caption.strip(),
                tags=post.tags,
                created_at=post.created_at,
                source=post.source,
                scope=scope.value,
                phash=prepared.phash,
                model=self.encoder.identity.name,
                revision=self.encoder.identity.revision,
            ),
            image_vector=prepared.image_vector,
            text_vector=prepared.text_vector,
        )
        self.thumbnails.put(post.point_id, prepared.clean.image)
        try:
            self.case_store.upsert([record])
        except BaseException:
            self.thumbnails.delete([post.point_id])
            raise
        scope_after = self._scope_now(post)
        if scope_after is None:  # consent withdrawn while we were writing: undo
            self.case_store.delete([post.point_id])
            self.thumbnails.delete([post.point_id])
            return IngestResult(post.point_id, Outcome.NO_CONSENT, "consent was withdrawn", name=post.name)
        if scope_after is not scope:  # narrowed while we were writing: a re-scope then could not see it
            payload = record.payload.model_copy(update={"scope": scope_after.value})
            self.case_store.upsert([replace(record, payload=payload)])
        return IngestResult(post.point_id, Outcome.INGESTED, "; ".join(prepared.notes), name=post.name)

    # ------------------------------------------------------------------ entry points

    def ingest(self, posts: Sequence[PostImage], *, skip_gate: bool = False) -> list[IngestResult]:
        """Ingest a batch (embedded together); results in input order, one per post."""
        results: dict[int, IngestResult] = {}
        prepared: list[tuple[int, _Prepared]] = []
        for i, post in enumerate(posts):
            if post.scope is None and self._scope_now(post) is None:
                results[i] = IngestResult(
                    post.point_id, Outcome.NO_CONSENT, "the author has not consented", name=post.name
                )
                continue
            step = self._prepare(post)
            if isinstance(step, IngestResult):
                results[i] = step
            else:
                prepared.append((i, step))
        if prepared:
            embedded = self._embed([p for _, p in prepared], skip_gate=skip_gate)
            for (i, _), step in zip(prepared, embedded, strict=True):
                results[i] = step if isinstance(step, IngestResult) else self._upsert(step)
        for result in results.values():
            # Not the reason: it may quote the caption or the attachment's link.
            log.info("ingest outcome: %s", result.outcome.value)  # no ids: logs outlive erasure
        return [results[i] for i in range(len(posts))]

    def sweep_orphan_thumbnails(self) -> int:
        """Delete thumbnails whose case is not in the store (left by a crash mid-ingest)."""
        ids = list(self.thumbnails.ids())
        if not ids:
            return 0
        present = {record.id for record in self.case_store.get(ids)}
        orphans = [i for i in ids if i not in present]
        self.thumbnails.delete(orphans)
        return len(orphans)
