"""Model tasks: zero-shot suggestions and embeddings, thin functions from a request to a result contract.

Each handler only strings steps together (resolve the image, encode it through the micro-batcher,
classify); the logic lives in model/. A handler raises PlipbotError subclasses for expected failures
and `workers.runtime.execute` turns them into TaskErrors, so every handler can be called directly in
a test with a `TaskContext`.
"""

from __future__ import annotations

from workers.contracts import (
    EmbedImagesRequest,
    EmbedResult,
    EmbedTextsRequest,
    ModelInfo,
    SuggestRequest,
    SuggestResult,
)
from workers.runtime import TaskContext, TaskRegistry
from workers.steps import batch_stats, embed_one_image, label_set_for, suggestion_for

MODEL_TASKS = TaskRegistry()


@MODEL_TASKS.task("plipbot.suggest", request=SuggestRequest, result=SuggestResult, idempotent=True)
def suggest(request: SuggestRequest, context: TaskContext) -> SuggestResult:
    """Zero-shot label suggestions for one image."""
    label_set = label_set_for(request)  # a bad label set fails before any download
    batched = embed_one_image(request.image, context)
    return suggestion_for(request, label_set, batched, context)


@MODEL_TASKS.task("plipbot.embed_texts", request=EmbedTextsRequest, result=EmbedResult, idempotent=True)
def embed_texts(request: EmbedTextsRequest, context: TaskContext) -> EmbedResult:
    """Text embeddings, L2-normalised."""
    vectors = context.resources.encode_texts(list(request.texts))
    model: ModelInfo = context.resources.encoder_ready
    return EmbedResult(model=model, dim=int(vectors.shape[1]), vectors=vectors.tolist())


@MODEL_TASKS.task("plipbot.embed_images", request=EmbedImagesRequest, result=EmbedResult, idempotent=True)
def embed_images(request: EmbedImagesRequest, context: TaskContext) -> EmbedResult:
    """Image embeddings, L2-normalised, encoded together with other requests' images."""
    with context.image_session() as session:
        images = [context.load_image(ref) for ref in request.images]
        batched = session.run(images, timeout_s=context.remaining_s())
    model = context.resources.encoder_ready
    return EmbedResult(
        model=model,
        dim=len(batched[0].value),
        vectors=[b.value.tolist() for b in batched],
        stats=batch_stats(batched, context),
    )
