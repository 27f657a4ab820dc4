"""Encoder behaviour: normalisation, batching, order, precision, robust input, identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.encoder import ClipEncoder
from model.weights import resolve_weights
from plipbot.errors import PlipbotError
from tests.imagegen import ihc, noise, solid, texture


@pytest.fixture(scope="module")
def encoder(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> ClipEncoder:
    models = tmp_path_factory.mktemp("models")
    return ClipEncoder.from_weights(resolve_weights(str(tiny_checkpoint), models), device="cpu", batch_size=4)


def _images(n: int) -> list[Image.Image]:
    return [texture((96 + 7 * i, 80 + 5 * i), seed=i) for i in range(n)]


def test_rows_are_unit_norm_float32_in_input_order(encoder: ClipEncoder) -> None:
    images = _images(9)  # not a multiple of the batch size
    out = encoder.encode_images(images)
    assert out.shape == (9, encoder.embed_dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([encoder.encode_images([im]) for im in images])
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)
    reversed_out = encoder.encode_images(images[::-1])
    np.testing.assert_allclose(reversed_out[::-1], out, atol=1e-5)


def test_texts_batched_equals_single(encoder: ClipEncoder) -> None:
    texts = [f"An H&E image patch of label {i}." for i in range(6)]
    out = encoder.encode_texts(texts)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[3], encoder.encode_texts([texts[3]])[0], atol=1e-5)


def test_empty_inputs_give_empty_arrays(encoder: ClipEncoder) -> None:
    assert encoder.encode_images([]).shape == (0, encoder.embed_dim)
    assert encoder.encode_texts([]).shape == (0, encoder.embed_dim)


def test_content_dominant_checkpoint_separates_distinct_images(encoder: ClipEncoder) -> None:
    """The test checkpoints must not map every image to one direction, or search tests prove nothing."""
    images = [solid((230, 230, 230), (128, 128)), solid((120, 40, 160), (128, 128)), texture(seed=1), ihc()]
    emb = encoder.encode_images(images)
    cos = emb @ emb.T
    off_diagonal = cos[~np.eye(len(images), dtype=bool)]
    assert off_diagonal.max() < 0.95, cos


def test_rgba_and_grayscale_inputs_are_converted_like_viewers_show_them(encoder: ClipEncoder) -> None:
    rgb = ihc().crop((0, 0, 200, 200))
    rgba = rgb.convert("RGBA")
    np.testing.assert_allclose(encoder.encode_images([rgba]), encoder.encode_images([rgb]), atol=1e-6)
    transparent = Image.new("RGBA", (200, 200), (255, 0, 0, 0))  # fully transparent red -> white
    white = Image.new("RGB", (200, 200), (255, 255, 255))
    np.testing.assert_allclose(
        encoder.encode_images([transparent]), encoder.encode_images([white]), atol=1e-6
    )
    gray = rgb.convert("L")
    np.testing.assert_allclose(
        encoder.encode_images([gray]), encoder.encode_images([gray.convert("RGB")]), atol=1e-6
    )


@pytest.mark.slow
def test_bf16_on_cpu_agrees_with_fp32(vit_b32_checkpoint: Path, tmp_path: Path) -> None:
    """Full ViT-B/32 shape: bf16 autocast must stay within cosine 0.999 of the fp32 reference."""
    weights = resolve_weights(str(vit_b32_checkpoint), tmp_path / "models")
    fp32 = ClipEncoder.from_weights(weights, device="cpu", precision="fp32")
    bf16 = ClipEncoder.from_weights(weights, device="cpu", precision="bf16")
    images = [ihc(), noise((300, 240), seed=4), texture(seed=9)]
    texts = ["An H&E image patch of debris.", "An H&E image of malignant tissue."]
    img_cos = np.sum(fp32.encode_images(images) * bf16.encode_images(images), axis=1)
    txt_cos = np.sum(fp32.encode_texts(texts) * bf16.encode_texts(texts), axis=1)
    assert img_cos.min() >= 0.999, img_cos
    assert txt_cos.min() >= 0.999, txt_cos
    assert bf16.encode_images(images).dtype == np.float32


def test_fp16_on_cpu_and_unknown_precision_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    weights = resolve_weights(str(tiny_checkpoint), tmp_path / "models")
    with pytest.raises(PlipbotError, match="fp16 needs a CUDA GPU"):
        ClipEncoder.from_weights(weights, device="cpu", precision="fp16")
    with pytest.raises(PlipbotError, match="Unknown precision"):
        ClipEncoder.from_weights(weights, device="cpu", precision="int3")


def test_local_random_checkpoint_is_never_called_plip(encoder: ClipEncoder) -> None:
    assert encoder.identity.name == "local"
    assert "PLIP" not in encoder.identity.label
    assert encoder.identity.label.startswith("local checkpoint tiny-random-clip")
    assert not encoder.identity.verified


@pytest.mark.gpu
def test_fp16_on_gpu_agrees_with_fp32(tiny_checkpoint: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    weights = resolve_weights(str(tiny_checkpoint), tmp_path / "models")
    ref = ClipEncoder.from_weights(weights, device="cuda", precision="fp32")
    images = _images(4)
    for precision in ("fp16", "bf16"):
        fast = ClipEncoder.from_weights(weights, device="cuda", precision=precision)
        cos = np.sum(ref.encode_images(images) * fast.encode_images(images), axis=1)
        assert cos.min() >= 0.999, (precision, cos)
