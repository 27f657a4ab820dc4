"""Zero-shot engine: label-set validation, probabilities, prompt ensembles, caching, uncertainty."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.encoder import ClipEncoder
from model.identity import ModelIdentity
from model.presets import get_preset, preset_names
from model.weights import resolve_weights
from model.zeroshot import Label, LabelSet, ZeroShotClassifier, softmax
from plipbot.errors import LabelSetError
from tests.imagegen import ihc, texture


class CountingEncoder:
    """A real encoder that counts text encodes, to observe the label-embedding cache."""

    def __init__(self, inner: ClipEncoder) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.default_template = inner.default_template
        self.logit_scale = inner.logit_scale
        self.text_calls: list[list[str]] = []

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.inner.encode_images(images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_calls.append(list(texts))
        return self.inner.encode_texts(texts)


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ClipEncoder:
    return ClipEncoder.from_weights(
        resolve_weights(str(tiny_checkpoint), tmp_path_factory.mktemp("models")), device="cpu"
    )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "empty"),
        (["tumor", "Tumor"], "appears twice"),
        (["ok", "  "], "cannot be empty"),
        (["x" * 101], "longer than"),
        ([f"l{i}" for i in range(101)], "Too many labels"),
    ],
)
def test_label_set_validation(labels: list[str], message: str) -> None:
    with pytest.raises(LabelSetError, match=message):
        LabelSet.from_texts(labels)


def test_templates_must_have_one_slot() -> None:
    with pytest.raises(LabelSetError, match="exactly one"):
        LabelSet.from_texts(["a"], ["no slot here"])
    with pytest.raises(LabelSetError, match="exactly one"):
        LabelSet.from_texts(["a"]).with_templates(["{} and {}"])


def test_probabilities_are_softmax_of_scaled_cosines(encoder: ClipEncoder) -> None:
    labels = LabelSet.from_texts(["adipose tissue", "debris", "mucus"], ["An H&E image patch of {}."])
    zs = ZeroShotClassifier(encoder)
    images = [ihc(), texture(seed=3)]
    img = encoder.encode_images(images)
    txt = encoder.encode_texts([f"An H&E image patch of {x}." for x in labels.texts])
    expected = softmax(encoder.logit_scale * img @ txt.T)
    probs = zs.probabilities(img, labels)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    preds = zs.predict(images, labels, top_k=2)
    for pred, row in zip(preds, probs, strict=True):
        assert len(pred.suggestions) == 2
        assert [s.probability for s in pred.suggestions] == sorted(row, reverse=True)[:2]
        assert pred.suggestions[0].label == labels.texts[int(row.argmax())]
        assert pred.model == encoder.identity


def test_prompt_ensemble_is_renormalised_mean(encoder: ClipEncoder) -> None:
    templates = ("An H&E image of {} tissue.", "A histopathology image of {} tissue.")
    labels = LabelSet("t", (Label("benign", templates), Label("malignant", templates[:1])))
    emb = ZeroShotClassifier(encoder).label_embeddings(labels)
    prompts = encoder.encode_texts([t.format("benign") for t in templates])
    mean = prompts.mean(axis=0)
    np.testing.assert_allclose(emb[0], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(
        emb[1], encoder.encode_texts(["An H&E image of malignant tissue."])[0], atol=1e-6
    )


def test_default_template_is_the_models(encoder: ClipEncoder) -> None:
    labels = LabelSet.from_texts(["debris"])
    emb = ZeroShotClassifier(encoder).label_embeddings(labels)
    assert encoder.default_template == "An H&E image patch of {}."
    np.testing.assert_allclose(emb[0], encoder.encode_texts(["An H&E image patch of debris."])[0], atol=1e-6)


def test_label_embeddings_cached_in_memory_and_on_disk(encoder: ClipEncoder, tmp_path: Path) -> None:
    counting = CountingEncoder(encoder)
    labels = get_preset("kather")
    zs = ZeroShotClassifier(counting, cache_dir=tmp_path)
    first = zs.label_embeddings(labels)
    zs.label_embeddings(labels)
    renamed = LabelSet("other-name", labels.labels)  # same labels and templates: same cache entry
    zs.label_embeddings(renamed)
    assert len(counting.text_calls) == 1
    fresh = ZeroShotClassifier(counting, cache_dir=tmp_path)  # a new process would find the file
    np.testing.assert_array_equal(fresh.label_embeddings(labels), first)
    assert len(counting.text_calls) == 1
    fresh.label_embeddings(labels.with_templates(["An H&E image of {} tissue."]))
    assert len(counting.text_calls) == 2


def test_cache_key_depends_on_model_revision(encoder: ClipEncoder) -> None:
    labels = get_preset("pannuke")
    a = ZeroShotClassifier(encoder).cache_key(labels)
    other = CountingEncoder(encoder)
    other.identity = ModelIdentity("local", "x", "y", "sha256:" + "0" * 64)
    assert ZeroShotClassifier(other).cache_key(labels) != a


class FixedEncoder:
    """Hand-made embeddings, to place images exactly between or onto labels."""

    identity = ModelIdentity("fixed", "fixed test vectors", "test", "0")
    default_template = "{}"
    logit_scale = 100.0

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        table = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0]}
        return np.asarray([table[t] for t in texts], dtype=np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        raise NotImplementedError


def test_uncertain_flag_from_margin_and_entropy() -> None:
    zs = ZeroShotClassifier(FixedEncoder(), uncertain_margin=0.15, uncertain_entropy=0.9)
    labels = LabelSet.from_texts(["a", "b", "c"])
    clear = np.asarray([[1.0, 0.0, 0.0]], dtype=np.float32)
    between = np.asarray([[0.7071, 0.7071, 0.0]], dtype=np.float32)
    flat = np.asarray([[0.577, 0.577, 0.577]], dtype=np.float32)
    sure, tie, unsure = (zs.predict_embeddings(x, labels)[0] for x in (clear, between, flat))
    assert not sure.uncertain and sure.suggestions[0].label == "a" and sure.margin > 0.99
    assert tie.uncertain and tie.margin < 0.01
    assert unsure.uncertain and unsure.entropy > 0.99


def test_single_label_is_certain_and_full() -> None:
    zs = ZeroShotClassifier(FixedEncoder())
    pred = zs.predict_embeddings(np.asarray([[0.0, 1.0, 0.0]], dtype=np.float32), LabelSet.from_texts(["a"]))[
        0
    ]
    assert pred.suggestions[0].probability == pytest.approx(1.0)
    assert not pred.uncertain


def test_presets_match_the_paper() -> None:
    assert set(preset_names()) >= {"kather", "pannuke", "digestpath", "wsss4luad", "organ", "stain"}
    kather = get_preset("kather")
    assert kather.texts == [
        "adipose tissue",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ]
    assert {lb.templates for lb in kather.labels} == {("An H&E image patch of {}.",)}
    assert get_preset("digestpath").prompts("")[1] == ["An H&E image of malignant tissue."]
    assert get_preset("wsss4luad").texts == ["tumor", "normal"]
    with pytest.raises(LabelSetError, match="Unknown preset"):
        get_preset("nope")
