"""Teaching the bot, without Discord: confirmations, reviews of members' corrections, the learning switch
and `/labels test`, as plain calls that return the text (and files) people read.

The cog (`bot.cogs.learning`) resolves Discord objects into a `ConfirmTarget` (which post, which image,
who posted it, when) and calls these in a thread. The worker decides whether an example may be kept
(the poster's consent in this server, or the image being a corpus case) and embeds it; this module never
sees pixels either.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from bot.feedback import FeedbackKind, FeedbackRow
from bot.reply import format_error, user_text
from bot.services import BotServices, Reply, ReplyFile, error_reply
from learning.examples import ExamplesStore, ReviewDecision
from model.zeroshot import LabelSet
from plipbot.errors import PlipbotError, ServiceUnavailableError
from workers.contracts import ImageRef, TaskError
from workers.learning_contracts import (
    ConfirmExampleRequest,
    ConfirmExampleResult,
    EvalScores,
    LearningTestRequest,
    LearningTestResult,
)

MAX_REVIEWS_SHOWN = 5
BUSY = "The analysis service is not reachable right now; please try again in a minute."


@dataclass(frozen=True)
class ConfirmTarget:
    """The image a confirmation is about: the post, its attachment, its poster and when it was posted."""

    guild_id: int
    channel_id: int
    message_id: int
    attachment_id: int
    url: str
    filename: str
    poster_id: int
    posted_at: datetime


def _shared_templates(label_set: LabelSet) -> list[str]:
    templates = {label.templates for label in label_set.labels}
    return list(next(iter(templates))) if len(templates) == 1 else []


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


class LearningActions:
    """What the learning cog calls (blocking: run in a thread)."""

    def __init__(self, services: BotServices, examples: ExamplesStore) -> None:
        self.services = services
        self.examples = examples

    # ------------------------------------------------------------------ confirmations

    def confirm(
        self,
        target: ConfirmTarget,
        label: str,
        *,
        label_set: LabelSet,
        confirmer_id: int,
        origin: str = "moderator",
    ) -> tuple[bool, str]:
        """Ask a worker to keep the example; (kept, one line for the moderator)."""
        label = " ".join(label.split())
        if not label:
            return False, format_error("Give the label to confirm.")
        try:
            request = ConfirmExampleRequest(
                image=ImageRef.from_url(target.url),
                guild_id=target.guild_id,
                channel_id=target.channel_id,
                message_id=target.message_id,
                attachment_id=target.attachment_id,
                poster_id=target.poster_id,
                confirmer_id=confirmer_id,
                posted_at=target.posted_at,
                label=label,
                labels=label_set.texts,
                templates=_shared_templates(label_set),
                origin=origin,  # type: ignore[arg-type]
            )
        except ValueError:
            return False, format_error("That label or image cannot be confirmed (too long or not a link).")
        try:
            outcome = self.services.task_client.call("plipbot.confirm_example", request, ConfirmExampleResult)
        except ServiceUnavailableError:
            return False, format_error(BUSY)
        if isinstance(outcome, TaskError):
            return False, format_error(outcome.message)
        if not outcome.kept:
            return False, format_error(outcome.reason)
        in_set = label.casefold() in {text.casefold() for text in label_set.texts}
        note = "" if in_set else " (not in this channel's label set: it counts once the label is added)"
        source = "a corpus case" if outcome.via == "corpus" else "posted with consent"
        return True, (
            f"Confirmed **{user_text(outcome.label, 80)}** for {user_text(target.filename, 60)} ({source}). "
            f"This server now has {outcome.label_examples} confirmed example(s) of it, "
            f"{outcome.examples} in all{note}."
        )

    # ------------------------------------------------------------------ reviews

    def pending_reviews(self, guild_id: int) -> list[FeedbackRow]:
        """Members' "Correct label…" feedback in this server no moderator decided on yet, oldest first."""
        decided = self.examples.reviewed(guild_id)
        return [
            row
            for row in self.services.feedback.export(guild_id)
            if row.kind is FeedbackKind.CORRECT_LABEL and row.correct_label and row.id not in decided
        ]

    def feedback_row(self, guild_id: int, feedback_id: int) -> FeedbackRow | None:
        """One correction of this server (None if it was erased meanwhile)."""
        return next((r for r in self.services.feedback.export(guild_id) if r.id == feedback_id), None)

    @staticmethod
    def describe_review(row: FeedbackRow, jump_link: str | None) -> str:
        """One correction as a moderator reads it."""
        predicted = row.predicted_label
        said = f"the answer said {user_text(predicted, 60)}" if predicted else "no suggestion shown"
        link = f" · [answer](<{jump_link}>)" if jump_link else ""
        return f"<@{int(row.user_id)}> says **{user_text(row.correct_label or '', 80)}** ({said}){link}"

    def decide(self, row: FeedbackRow, decision: ReviewDecision, moderator_id: int) -> None:
        """Remember the decision, so the correction leaves the review list."""
        self.examples.record_review(
            feedback_id=row.id, guild_id=row.guild_id, decision=decision, moderator_id=moderator_id
        )

    # ------------------------------------------------------------------ the switch

    def set_learning(
        self, guild_id: int, enabled: bool, *, channel_id: int | None, actor_id: int, where: str
    ) -> str:
        """`/labels learning on|off` for the channel or the server."""
        self.examples.set_learning(guild_id, enabled, channel_id=channel_id, actor_id=actor_id)
        if not enabled:
            return f"Learning is off in this {where}: answers are zero-shot."
        return (
            f"Learning is on in this {where}: confirmed examples adapt answers whenever their "
            "leave-one-out accuracy beats zero-shot's (`/labels test` shows the numbers)."
        )

    # ------------------------------------------------------------------ /labels test

    def test(self, guild_id: int, channel_id: int, label_set: LabelSet) -> Reply:
        """Zero-shot vs adapted on the server's examples, with the two confusion matrices."""
        try:
            request = LearningTestRequest(
                guild_id=guild_id,
                channel_id=channel_id,
                labels=label_set.texts,
                templates=_shared_templates(label_set),
            )
        except ValueError:
            return error_reply("This channel's label set cannot be tested (labels too long).")
        try:
            outcome = self.services.task_client.call("plipbot.learning_test", request, LearningTestResult)
        except ServiceUnavailableError:
            return error_reply(BUSY)
        if isinstance(outcome, TaskError):
            return error_reply(outcome.message)
        return label_set_test_reply(outcome)


def _score_line(name: str, scores: EvalScores) -> str:
    return f"{name}: weighted F1 **{scores.weighted_f1:.3f}**, accuracy **{_percent(scores.accuracy)}**"


def label_set_test_reply(result: LearningTestResult) -> Reply:
    """The `/labels test` answer: counts per label, the two scores, the state, and confusion PNGs."""
    counts = ", ".join(
        f"{user_text(label, 40)} {count}" for label, count in zip(result.labels, result.counts, strict=True)
    )
    lines = [
        f"**Label set test** on {result.examples} confirmed example(s) of this server",
        f"Per label: {counts}",
    ]
    if result.ignored:
        lines.append(f"{result.ignored} example(s) of labels outside this set are not counted.")
    if result.zero_shot is None or result.adapted is None:
        lines.append(result.reason or "No confirmed examples of these labels yet.")
        return Reply("\n".join(lines)[:2000])
    lines += [
        _score_line("Zero-shot", result.zero_shot),
        _score_line("Adapted (leave-one-out, as if each example were new)", result.adapted),
        ("Answers here use the adapter now." if result.active else "Answers here are zero-shot now.")
        + (f" ({user_text(result.reason, 300)})" if result.reason else ""),
    ]
    files = (
        ReplyFile("confusion-zero-shot.png", confusion_png(result.zero_shot, result.labels, "zero-shot")),
        ReplyFile("confusion-adapted.png", confusion_png(result.adapted, result.labels, "adapted")),
    )
    return Reply("\n".join(lines)[:2000], files)


def confusion_png(scores: EvalScores, labels: list[str], title: str) -> bytes:
    """The harness's confusion-matrix figure as PNG bytes."""
    import numpy as np

    from evaluation.plots import DPI, confusion_figure

    figure = confusion_figure(np.asarray(scores.confusion), labels, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def user_message(err: PlipbotError) -> str:
    """A PlipbotError as the one line the cog sends."""
    return format_error(err.user_message)
