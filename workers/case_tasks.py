"""Corpus tasks: thin handlers over `store.similar`, `ingest.pipeline` and `ingest.withdrawal`.

`plipbot.answer` embeds the image once and uses that embedding twice (zero-shot suggestions and the
similar-case search), which halves the model work of the bot's most common request. Ingest and
withdrawal are idempotent (deterministic point ids; withdrawing twice deletes nothing more), so they
run with acks_late on the `ingest` queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.case_contracts import (
    AnswerRequest,
    AnswerResult,
    CaseOut,
    IngestPostRequest,
    IngestPostResult,
    SearchRequest,
    SearchResult,
    WithdrawRequest,
    WithdrawResult,
)
from workers.learning_tasks import adapt_suggestion
from workers.runtime import TaskContext, TaskRegistry
from workers.steps import embed_one_image, label_set_for, suggestion_for

if TYPE_CHECKING:
    from store.similar import SimilarCase

CASE_TASKS = TaskRegistry()


def _case_out(case: SimilarCase) -> CaseOut:
    return CaseOut.model_validate(case.as_dict())


@CASE_TASKS.task("plipbot.answer", request=AnswerRequest, result=AnswerResult, idempotent=True)
def answer(request: AnswerRequest, context: TaskContext) -> AnswerResult:
    """Suggestions and similar cases for one image, from a single embedding."""
    label_set = label_set_for(request)  # a bad label set fails before any download
    batched = embed_one_image(request.image, context)
    suggestion = adapt_suggestion(
        request, label_set, batched[0].value, suggestion_for(request, label_set, batched, context), context
    )
    cases: list[CaseOut] = []
    if request.k:
        found = context.resources.container.similar_search.by_vector(
            batched[0].value,
            using="image",
            guild_id=request.guild_id,
            k=request.k,
            exclude_message_id=request.exclude_message_id,
        )
        cases = [_case_out(c) for c in found]
    return AnswerResult(suggest=suggestion, cases=cases)


@CASE_TASKS.task("plipbot.search", request=SearchRequest, result=SearchResult, idempotent=True)
def search(request: SearchRequest, context: TaskContext) -> SearchResult:
    """Nearest cases to an image or a text, through the server's privacy filter."""
    similar = context.resources.container.similar_search
    if request.mode == "text":
        assert request.text is not None
        vector = context.resources.encode_texts([request.text])[0]
        using = "image"
    else:
        assert request.image is not None
        vector = embed_one_image(request.image, context)[0].value
        using = "text" if request.mode == "captions" else "image"
    found = similar.by_vector(
        vector,
        using=using,
        guild_id=request.guild_id,
        k=request.k,
        exclude_message_id=request.exclude_message_id,
    )
    return SearchResult(cases=[_case_out(c) for c in found], model=context.resources.encoder_ready)


@CASE_TASKS.task("plipbot.ingest_post", request=IngestPostRequest, result=IngestPostResult, idempotent=True)
def ingest_post(request: IngestPostRequest, context: TaskContext) -> IngestPostResult:
    """Run one consenting post's attachment through the ingest pipeline."""
    from ingest.pipeline import PostImage
    from store.ids import case_point_id

    resources = context.resources
    pipeline = resources.container.ingest_pipeline
    point_id = case_point_id(request.guild_id, request.message_id, request.attachment_id)
    post = PostImage(
        point_id=point_id,
        guild_id=request.guild_id,
        image=resources.image_bytes(request.image, timeout_s=context.remaining_s()),
        created_at=request.created_at,
        caption=request.caption,
        channel_id=request.channel_id,
        message_id=request.message_id,
        attachment_id=request.attachment_id,
        author_id=request.author_id,
        jump_link=request.jump_link,
        name=request.filename,
    )
    resources.encoder_ready  # noqa: B018  (loads and logs the model on first use)
    with resources.model_lock:
        [result] = pipeline.ingest([post])
    from plipbot.observability import plipbot_metrics

    plipbot_metrics().record_ingest(result.outcome)
    return IngestPostResult(
        point_id=result.point_id,
        outcome=result.outcome.value,
        reason=result.reason,
        duplicate_of=result.duplicate_of,
    )


@CASE_TASKS.task("plipbot.withdraw", request=WithdrawRequest, result=WithdrawResult, idempotent=True)
def withdraw(request: WithdrawRequest, context: TaskContext) -> WithdrawResult:
    """Withdraw consent and erase the user's data from every store (`Container.user_data_stores`).

    A store that fails leaves the erasure open: the user is told so (`ErasureIncompleteError`'s
    message), and the bot's sweep finishes it and tells them by direct message.
    """
    from ingest.withdrawal import forget_user

    container = context.resources.container
    with context.resources.model_lock:  # the embedded store has one handle per process
        report = forget_user(
            consent_ledger=container.consent_ledger,
            stores=container.user_data_stores(),
            user_id=request.user_id,
            guild_id=request.guild_id,
            actor_id=request.actor_id,
        )
    return WithdrawResult(deleted=report.cases)
