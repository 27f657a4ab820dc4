"""Learning tasks: keep a confirmed example, test a label set on a server's examples, and the step that
adapts an answer with the server's cache adapter.

The worker reads the server's examples from the examples store itself (it has database access, like
the consent ledger), so answers carry no examples in their messages, and a confirmation made through
any worker is seen by every worker at its next answer (`learning.adapters.ServerAdapters` compares
the server's revision).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from plipbot.errors import PlipbotError
from workers.contracts import Adaptation, Suggestion, SuggestResult
from workers.learning_contracts import (
    ConfirmExampleRequest,
    ConfirmExampleResult,
    EvalScores,
    LearningTestRequest,
    LearningTestResult,
)
from workers.runtime import TaskContext, TaskRegistry
from workers.steps import embed_one_image

if TYPE_CHECKING:
    from learning.adapters import ServerAdapter
    from model.zeroshot import LabelSet
    from workers.case_contracts import AnswerRequest

log = logging.getLogger(__name__)

LEARNING_TASKS = TaskRegistry()

NOT_KEPT = (
    "Not kept: the poster has not consented to share their posts in this server "
    "(`/consent grant`), and the image is not a corpus case."
)
MAX_TESTED_EXAMPLES = 500
"""Newest examples `/labels test` scores (nested leave-one-out costs n^2 per grid point)."""


def _model_key(context: TaskContext) -> str:
    from learning.examples import model_key

    info = context.resources.encoder_ready
    return model_key(info.name, info.revision)


def _label_inputs(label_set: LabelSet, context: TaskContext) -> tuple[np.ndarray, str, float]:
    """The label set's text embeddings, its prompt cache key and the model's logit scale."""
    resources = context.resources
    resources.encoder_ready  # noqa: B018  (loads the model on first use)
    zero_shot = resources.container.zero_shot
    with resources.model_lock:  # may encode the prompts (first use of this label set)
        embeddings = zero_shot.label_embeddings(label_set)
    return embeddings, zero_shot.cache_key(label_set), float(zero_shot.encoder.logit_scale)


def _server_adapter(
    guild_id: int, channel_id: int | None, label_set: LabelSet, context: TaskContext
) -> tuple[ServerAdapter | None, np.ndarray, float]:
    embeddings, cache_key, logit_scale = _label_inputs(label_set, context)
    adapters = context.resources.container.server_adapters
    server = adapters.adapter_for(
        guild_id=guild_id,
        channel_id=channel_id,
        model_key=_model_key(context),
        label_set=label_set,
        label_set_cache_key=cache_key,
        label_embeddings=embeddings,
        logit_scale=logit_scale,
    )
    return server, embeddings, logit_scale


def adapt_suggestion(
    request: AnswerRequest,
    label_set: LabelSet,
    vector: np.ndarray,
    suggestion: SuggestResult,
    context: TaskContext,
) -> SuggestResult:
    """The zero-shot `suggestion`, adapted by the server's confirmed examples when they apply.

    Learning must never cost an answer: if the examples database is unreachable the answer stays
    zero-shot (and the failure is logged).
    """
    from learning.adapters import adapt_logits

    if request.guild_id is None or not context.resources.container.server_adapters.policy.enabled:
        return suggestion
    try:
        server, embeddings, logit_scale = _server_adapter(
            request.guild_id, request.channel_id, label_set, context
        )
    except PlipbotError as err:
        log.warning("answering zero-shot: the examples could not be read (%s)", type(err).__name__)
        return suggestion
    if server is None or server.adapter is None:
        return suggestion
    query = np.asarray(vector, dtype=np.float32)
    adapted = adapt_logits(query, logit_scale * (query @ embeddings.T), server.adapter)
    top_k = request.top_k or context.resources.settings.zeroshot.top_k
    prediction = context.resources.container.zero_shot.prediction(adapted.adapted, label_set, top_k)
    moved = {
        label_set.labels[i].text: float(adapted.adapted[i] - adapted.zero_shot[i]) for i in adapted.moved
    }
    return suggestion.model_copy(
        update={
            "suggestions": [
                Suggestion(label=s.label, probability=s.probability) for s in prediction.suggestions
            ],
            "uncertain": prediction.uncertain,
            "margin": prediction.margin,
            "entropy": prediction.entropy,
            "adaptation": Adaptation(examples=server.fit.examples, changed=adapted.changed, moved=moved),
        }
    )


@LEARNING_TASKS.task(
    "plipbot.confirm_example", request=ConfirmExampleRequest, result=ConfirmExampleResult, idempotent=True
)
def confirm_example(request: ConfirmExampleRequest, context: TaskContext) -> ConfirmExampleResult:
    """Keep a confirmed example when its poster consented here or it is a corpus case already.

    A corpus case's stored vector is reused (no download); otherwise the attachment is fetched and
    embedded, and only the embedding is kept.
    """
    from learning.examples import ExampleOrigin, label_set_key
    from model.zeroshot import LabelSet
    from store.ids import case_point_id

    label_set = LabelSet.from_texts(request.labels, request.templates)  # validates before any work
    container = context.resources.container
    point_id = case_point_id(request.guild_id, request.message_id, request.attachment_id)
    vector: np.ndarray | None = None
    cases = container.case_store.get([point_id])
    if cases:
        vector, via = np.asarray(cases[0].image_vector, dtype=np.float32), "corpus"
    elif container.consent_ledger.allows(request.poster_id, request.guild_id, request.posted_at) is not None:
        via = "consent"
    else:
        return ConfirmExampleResult(kept=False, reason=NOT_KEPT, label=request.label)
    if vector is None:
        vector = np.asarray(embed_one_image(request.image, context)[0].value, dtype=np.float32)
    key = _model_key(context)
    examples = container.examples_store
    example = examples.confirm(
        guild_id=request.guild_id,
        channel_id=request.channel_id,
        label_set_key=label_set_key(label_set),
        label=request.label,
        message_id=request.message_id,
        attachment_id=request.attachment_id,
        poster_id=request.poster_id,
        confirmer_id=request.confirmer_id,
        origin=ExampleOrigin(request.origin),
        model_key=key,
        vector=vector,
    )
    if via == "consent" and not _still_consented(request, context):
        # A withdrawal recorded while we embedded: its erasure may already have run, so undo ours.
        examples.remove(request.guild_id, [example.id])
        return ConfirmExampleResult(kept=False, reason=NOT_KEPT, label=request.label)
    container.server_adapters.invalidate(request.guild_id)
    counts = examples.examples(request.guild_id, key).label_counts()
    return ConfirmExampleResult(
        kept=True,
        via=via,  # type: ignore[arg-type]
        label=example.label,
        label_examples=counts.get(example.label.casefold(), 0),
        examples=sum(counts.values()),
    )


def _still_consented(request: ConfirmExampleRequest, context: TaskContext) -> bool:
    """Consent checked again after the write, as the ingest pipeline does at upsert: a withdrawal
    records itself before it erases, so either its erasure saw our example or we see the withdrawal."""
    ledger = context.resources.container.consent_ledger
    return ledger.allows(request.poster_id, request.guild_id, request.posted_at) is not None


def _scores(truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> EvalScores:
    from evaluation.metrics import classification_metrics

    metrics = classification_metrics(truth, predicted, labels)
    return EvalScores(
        weighted_f1=metrics.weighted_f1,
        accuracy=metrics.accuracy,
        confusion=np.asarray(metrics.confusion).astype(int).tolist(),
    )


@LEARNING_TASKS.task(
    "plipbot.learning_test", request=LearningTestRequest, result=LearningTestResult, idempotent=True
)
def learning_test(request: LearningTestRequest, context: TaskContext) -> LearningTestResult:
    """Zero-shot and adapted scores of a label set on the server's examples (nested leave-one-out:
    each example is answered as if it had never been confirmed)."""
    from learning.adapters import labelled_examples
    from model.adapter import nested_loo_predictions
    from model.zeroshot import LabelSet

    label_set = LabelSet.from_texts(request.labels, request.templates)
    container = context.resources.container
    adapters = container.server_adapters
    example_set = container.examples_store.examples(
        request.guild_id, _model_key(context), limit=min(adapters.policy.max_examples, MAX_TESTED_EXAMPLES)
    )
    labelled = labelled_examples(example_set, label_set)
    texts = label_set.texts
    base = LearningTestResult(
        labels=texts,
        examples=labelled.size,
        ignored=len(example_set) - labelled.size,
        counts=list(labelled.counts),
    )
    if labelled.size == 0:
        return base.model_copy(update={"reason": "No confirmed examples of these labels yet."})
    server, embeddings, logit_scale = _server_adapter(
        request.guild_id, request.channel_id, label_set, context
    )
    zs_logits = logit_scale * (labelled.vectors @ embeddings.T)
    zero_shot = np.argmax(zs_logits, axis=1)
    adapted = nested_loo_predictions(
        labelled.vectors, labelled.labels, zs_logits, margin=adapters.policy.margin
    )
    return base.model_copy(
        update={
            "zero_shot": _scores(labelled.labels, zero_shot, texts),
            "adapted": _scores(labelled.labels, adapted, texts),
            "active": bool(server is not None and server.active),
            "reason": server.reason if server is not None else "",
        }
    )
