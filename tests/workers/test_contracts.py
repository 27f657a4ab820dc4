"""Contracts: what may cross the queue, and how answers are told apart."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from workers.blobs import blob_key
from workers.contracts import (
    BatchStats,
    EmbedResult,
    EmbedTextsRequest,
    ImageRef,
    ModelInfo,
    SuggestRequest,
    SuggestResult,
    TaskError,
    parse_outcome,
)

MODEL = ModelInfo(name="local", title="t", source="/x", revision="sha256:0", verified=False, label="t (/x@0)")


def test_image_ref_is_a_url_or_a_blob_key_never_bytes() -> None:
    assert ImageRef.from_url("https://cdn.example/a.png").url == "https://cdn.example/a.png"
    assert ImageRef.from_url("file:///tmp/a.png").describe() == "file:///tmp/a.png"
    key = blob_key(b"pixels")
    assert ImageRef.from_blob(key).blob == key
    for bad in ({}, {"url": "https://a/b.png", "blob": key}, {"url": "ftp://a/b.png"}, {"blob": "short"}):
        with pytest.raises(ValidationError):
            ImageRef.model_validate(bad)
    with pytest.raises(ValidationError):
        ImageRef.model_validate({"url": "https://a/b.png", "bytes": "aGVsbG8="})  # unknown field


def test_suggest_request_takes_labels_or_a_preset_not_both() -> None:
    image = ImageRef.from_url("https://a/b.png")
    assert SuggestRequest(image=image).preset is None
    assert SuggestRequest(image=image, labels=["tumor", "normal"], top_k=1).labels == ["tumor", "normal"]
    with pytest.raises(ValidationError, match="not both"):
        SuggestRequest(image=image, labels=["a"], preset="kather")
    with pytest.raises(ValidationError):
        SuggestRequest(image=image, top_k=0)
    with pytest.raises(ValidationError):
        EmbedTextsRequest(texts=[])


def test_requests_survive_a_json_round_trip() -> None:
    request = SuggestRequest(
        image=ImageRef.from_blob(blob_key(b"x")), labels=["a", "b"], templates=["a photo of {}."], top_k=2
    )
    assert SuggestRequest.model_validate(json.loads(request.model_dump_json())) == request


def test_outcomes_are_told_apart_by_kind() -> None:
    result = SuggestResult(
        suggestions=[],
        uncertain=True,
        margin=0.0,
        entropy=1.0,
        label_set="custom",
        model=MODEL,
        stats=BatchStats(batch_size=1, encode_ms=1.0, task_ms=2.0),
    )
    payload = json.loads(result.model_dump_json())
    assert parse_outcome(payload, SuggestResult) == result
    error = TaskError(code="invalid_image", message="That file is empty.")
    assert parse_outcome(error.model_dump(mode="json"), SuggestResult) == error
    # An answer of the wrong shape is an internal error, not an exception in the bot.
    garbled = parse_outcome({"kind": "embed"}, SuggestResult)
    assert isinstance(garbled, TaskError) and garbled.code == "internal"


def test_float32_vectors_round_trip_exactly_through_json() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 8)).astype(np.float32)
    result = EmbedResult(model=MODEL, dim=8, vectors=vectors.tolist())
    back = parse_outcome(json.loads(result.model_dump_json()), EmbedResult)
    assert isinstance(back, EmbedResult)
    np.testing.assert_array_equal(back.as_array(), vectors)
