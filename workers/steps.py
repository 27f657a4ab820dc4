"""Steps several tasks share: the label set a request asks for, one image through the micro-batcher,
and zero-shot suggestions from a vector already computed.

Task modules (`model_tasks`, `case_tasks`) import these; nothing here imports a task module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.contracts import BatchStats, ImageRef, Suggestion, SuggestRequest, SuggestResult
from workers.runtime import TaskContext

if TYPE_CHECKING:
    from model.zeroshot import LabelSet
    from workers.batching import Batched


def label_set_for(request: SuggestRequest) -> LabelSet:
    """The labels typed with the request, else its preset, else the default preset (with its templates)."""
    from model.presets import DEFAULT_PRESET, get_preset
    from model.zeroshot import LabelSet

    if request.labels is not None:
        label_set = LabelSet.from_texts(request.labels)
    else:
        label_set = get_preset(request.preset or DEFAULT_PRESET)
    return label_set.with_templates(request.templates) if request.templates else label_set


def batch_stats(batched: list[Batched[Any]], context: TaskContext) -> BatchStats:
    """How the request's images were batched and how long the encoding and the whole task took."""
    return BatchStats(
        batch_size=max((b.batch_size for b in batched), default=0),
        encode_ms=sum({b.batch_id: b.process_ms for b in batched}.values()),
        task_ms=context.elapsed_ms(),
    )


def embed_one_image(image: ImageRef, context: TaskContext) -> list[Batched[Any]]:
    """Fetch, decode and encode one image through the micro-batcher (its vector is `[0].value`)."""
    with context.image_session() as session:
        loaded = context.load_image(image)
        batched = session.run([loaded], timeout_s=context.remaining_s())
    context.checkpoint()
    return batched


def suggestion_for(
    request: SuggestRequest, label_set: LabelSet, batched: list[Batched[Any]], context: TaskContext
) -> SuggestResult:
    """Zero-shot suggestions from an image vector the caller already has."""
    import numpy as np

    top_k = request.top_k or context.resources.settings.zeroshot.top_k
    model = context.resources.encoder_ready
    prediction = context.resources.predict(np.stack([batched[0].value]), label_set, top_k)[0]
    return SuggestResult(
        suggestions=[Suggestion(label=s.label, probability=s.probability) for s in prediction.suggestions],
        uncertain=prediction.uncertain,
        margin=prediction.margin,
        entropy=prediction.entropy,
        label_set=label_set.name,
        model=model,
        stats=batch_stats(batched, context),
    )
