"""What the bot does, without Discord: requests to the workers turned into replies people read.

Cogs are thin adapters: they pull ids, attachment links and options out of discord.py objects, call
these functions (in a thread: task calls block), and send what comes back. Everything here is plain
Python, so it is tested without a Discord client, and every failure becomes a short reply text,
never a traceback.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot import render
from bot.feedback import FeedbackStore
from bot.guild_config import ChannelConfig, GuildConfigStore
from bot.moderation import Cooldowns, parse_label_list
from bot.reply import compose_answer, format_error, format_search_answer
from ingest.consent_ledger import ConsentLedger
from learning.examples import ExamplesStore
from model.identity import ModelIdentity
from model.images import describe_bytes
from model.zeroshot import LabelSet, Prediction, Suggestion
from plipbot.errors import PlipbotError, ServiceUnavailableError
from plipbot.settings import Settings
from store.similar import SimilarCase
from store.thumbnails import ThumbnailStore
from workers.case_contracts import AnswerRequest, AnswerResult, CaseOut, SearchRequest, SearchResult
from workers.client import TaskClient
from workers.contracts import ImageRef, ModelInfo, SuggestResult, TaskError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".tif", ".tiff", ".bmp")
BUSY_MESSAGE = "The analysis service is not reachable right now; please try again in a minute."


@dataclass(frozen=True)
class Attachment:
    """The parts of a Discord attachment the bot needs."""

    id: int
    url: str
    filename: str
    size: int
    content_type: str | None = None

    @property
    def looks_like_image(self) -> bool:
        """Discord's content type, or the file name when Discord gives none; the worker sniffs bytes."""
        if self.content_type:
            return self.content_type.startswith("image/")
        return self.filename.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class ReplyFile:
    """A file to attach to a reply."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    """One message to send: text, files, and what the feedback buttons need to know."""

    content: str
    files: tuple[ReplyFile, ...] = ()
    ok: bool = True
    predicted: tuple[tuple[str, float], ...] = ()
    model_label: str = ""
    feedback: bool = False


def error_reply(message: str) -> Reply:
    """A short, one-line error."""
    return Reply(format_error(message), ok=False)


def rendered(filename: str, draw: Callable[[], bytes]) -> list[ReplyFile]:
    """The attachment `draw` makes, or none when drawing fails: the text answer never waits on a picture.

    Only the exception's type is logged: its message could quote a label or caption.
    """
    try:
        return [ReplyFile(filename, draw())]
    except Exception as err:  # any failure of a picture must leave the answer itself intact
        log.error("%s could not be drawn (%s); the answer is sent without it", filename, type(err).__name__)
        return []


@dataclass
class BotServices:
    """Everything the cogs use, built once at the composition root."""

    settings: Settings
    task_client: TaskClient
    guild_config: GuildConfigStore
    feedback: FeedbackStore
    consent_ledger: ConsentLedger
    thumbnails: ThumbnailStore
    examples: ExamplesStore | None = None
    """Confirmed examples, the learning switch and review decisions (`bot.learning`); None: no learning."""
    cooldowns: Cooldowns = field(init=False)

    def __post_init__(self) -> None:
        discord = self.settings.discord
        self.cooldowns = Cooldowns(discord.cooldown_user_s, discord.cooldown_channel_s)

    # ------------------------------------------------------------------ checks

    def check_attachment(self, attachment: Attachment) -> str | None:
        """Why an attachment cannot be analysed, or None."""
        if not attachment.looks_like_image:
            kind = (
                attachment.content_type or mimetypes.guess_type(attachment.filename)[0] or "an unknown type"
            )
            return f"{attachment.filename} is not an image ({kind}); send a PNG or JPEG."
        limit = self.settings.ingest.max_bytes
        if attachment.size > limit:
            return f"{attachment.filename} is larger than {describe_bytes(limit)}; send a smaller image."
        return None

    def cooldown_message(self, guild_id: int, channel_id: int, user_id: int) -> str | None:
        """A short 'please wait' when this user or channel is asking too fast, else None."""
        wait = self.cooldowns.check(guild_id, channel_id, user_id)
        return None if wait is None else f"Please wait {max(1, round(wait))} s before asking again."

    # ------------------------------------------------------------------ answers

    def label_set_for(self, config: ChannelConfig, labels_text: str | None) -> LabelSet:
        """The channel's label set, or labels typed with the command (validated like any label set)."""
        if labels_text and labels_text.strip():
            return LabelSet.from_texts(parse_label_list(labels_text), config.label_set.labels[0].templates)
        return config.label_set

    def answer_image(
        self,
        attachment: Attachment,
        *,
        config: ChannelConfig,
        message_id: int | None,
        labels_text: str | None = None,
        with_suggestions: bool = True,
        with_cases: bool = True,
    ) -> Reply:
        """Suggestions and/or similar cases for one image, as a reply with chart and case grid."""
        problem = self.check_attachment(attachment)
        if problem:
            return error_reply(problem)
        try:
            label_set = self.label_set_for(config, labels_text)
        except PlipbotError as err:
            return error_reply(err.user_message)
        k = self.settings.discord.similar_cases if with_cases else 0
        request = AnswerRequest(
            image=ImageRef.from_url(attachment.url),
            labels=label_set.texts,
            templates=list(_shared_templates(label_set)),
            guild_id=config.guild_id,
            channel_id=config.channel_id,
            exclude_message_id=message_id,
            k=k,
        )
        outcome = self._call(lambda: self.task_client.answer(request))
        if isinstance(outcome, Reply):
            return outcome
        assert isinstance(outcome, AnswerResult)
        prediction = prediction_from(outcome.suggest)
        cases = [similar_case_from(c) for c in outcome.cases]
        adaptation = outcome.suggest.adaptation
        adapted = adaptation.examples if adaptation is not None and adaptation.changed else 0
        text = compose_answer(
            prediction if with_suggestions else None,
            cases if with_cases else None,
            label_set_name=label_set.name,
            image_name=attachment.filename,
            guild_id=config.guild_id,
            adapted_examples=adapted,
        )
        files = []
        if with_suggestions:
            moved = adaptation.moved if adaptation is not None and adaptation.changed else None
            files += rendered("suggestions.png", lambda: render.probability_chart(prediction, moved=moved))
        if with_cases:
            files += self._grid_file(cases[: text.cases_shown])
        return Reply(
            text.content,
            tuple(files),
            predicted=tuple((s.label, s.probability) for s in prediction.suggestions),
            model_label=prediction.model.label,
            feedback=with_suggestions,
        )

    def search_text(self, text: str, *, guild_id: int | None) -> Reply:
        """Text -> image search ("show me signet ring cell carcinoma")."""
        query = text.strip()
        if not query:
            return error_reply("Tell me what to look for, e.g. `@plipbot signet ring cell carcinoma`.")
        request = SearchRequest(
            mode="text", text=query[:1000], guild_id=guild_id, k=max(1, self.settings.discord.similar_cases)
        )
        outcome = self._call(lambda: self.task_client.search(request))
        if isinstance(outcome, Reply):
            return outcome
        assert isinstance(outcome, SearchResult)
        cases = [similar_case_from(c) for c in outcome.cases]
        identity = identity_from(outcome.model)
        content, cases_shown = format_search_answer(query, cases, identity, guild_id=guild_id)
        files = self._grid_file(cases[:cases_shown])
        return Reply(content, tuple(files), model_label=identity.label)

    def _grid_file(self, cases: Sequence[SimilarCase]) -> list[ReplyFile]:
        """The numbered thumbnail grid of `cases`: none when there are none or it cannot be drawn."""
        if not cases:
            return []
        return rendered(
            "similar-cases.png", lambda: render.case_grid([self.thumbnails.get_bytes(c.id) for c in cases])
        )

    def _call(self, call: object) -> AnswerResult | SearchResult | Reply:
        from plipbot.observability import plipbot_metrics

        with plipbot_metrics().track_request("bot") as timer:
            try:
                outcome = call()  # type: ignore[operator]
            except ServiceUnavailableError:
                log.warning("task call failed: service unavailable")
                timer.outcome = "unavailable"
                return error_reply(BUSY_MESSAGE)
            if isinstance(outcome, TaskError):
                log.info("task error %s", outcome.code)  # its message may quote what the user sent
                timer.outcome = outcome.code
                return error_reply(outcome.message)
            return outcome


def _shared_templates(label_set: LabelSet) -> tuple[str, ...]:
    templates = {label.templates for label in label_set.labels}
    return next(iter(templates)) if len(templates) == 1 else ()


def identity_from(info: ModelInfo) -> ModelIdentity:
    """The model identity a worker reported."""
    return ModelIdentity(
        name=info.name, title=info.title, source=info.source, revision=info.revision, verified=info.verified
    )


def prediction_from(result: SuggestResult) -> Prediction:
    """A worker's suggestion result as the Prediction that reply/render modules format."""
    ranked = tuple(Suggestion(s.label, s.probability) for s in result.suggestions)
    return Prediction(
        suggestions=ranked,
        uncertain=result.uncertain,
        margin=result.margin,
        entropy=result.entropy,
        model=identity_from(result.model),
        all_probabilities=ranked,
    )


def similar_case_from(case: CaseOut) -> SimilarCase:
    """A worker's case as the SimilarCase the reply module formats."""
    return SimilarCase(
        case.id,
        case.score,
        case.caption,
        case.source,
        case.link,
        case.guild_id,
        case.author_id,
        case.scope,
        tuple(case.tags),
    )


def strip_mentions(content: str, bot_id: int) -> str:
    """Message text without the bot's mention(s), for text searches."""
    for token in (f"<@{bot_id}>", f"<@!{bot_id}>"):
        content = content.replace(token, " ")
    return " ".join(content.split())


def image_attachments(
    attachments: Sequence[Attachment], limit: int
) -> tuple[list[Attachment], list[Attachment]]:
    """(images to answer, up to `limit`; the other attachments)."""
    images = [a for a in attachments if a.looks_like_image]
    return images[:limit], [a for a in attachments if a not in images[:limit]]
