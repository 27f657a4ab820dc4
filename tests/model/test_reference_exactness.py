"""Our open_clip runtime against the reference implementation, transformers.CLIPModel.

PLIP's authors run `CLIPModel` with `CLIPProcessor`; the checkpoints here are random (weights cannot
be downloaded on CI) but saved in exactly PLIP's format, so any conversion mistake shows up as a
difference above 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.encoder import ClipEncoder
from model.preprocess import preprocess_image
from model.registry import PreprocessSpec
from model.weights import resolve_weights
from model.zeroshot import LabelSet, ZeroShotClassifier
from tests.checkpoints import TINY, make_hf_clip
from tests.imagegen import ihc, noise, solid

TEXTS = [
    "An H&E image patch of adipose tissue.",
    "An H&E image patch of colorectal adenocarcinoma epithelium.",
    "Signet ring cell carcinoma, Ki-67 30%!",
    "",
    "a " * 100,  # longer than the context: truncation must keep the end-of-text token
]


def _images() -> list[Image.Image]:
    ihc_img = ihc()
    return [
        ihc_img,
        ihc_img.crop((0, 0, 301, 227)),  # odd margins: crop offset rounding matters
        ihc_img.crop((10, 0, 137, 399)).resize((127, 399)),  # portrait, upscaled short side
        noise((333, 250), seed=3),
        solid((200, 30, 120), size=(224, 224)),
    ]


def _reference(directory: Path):
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(directory).eval()
    return model, CLIPImageProcessorPil.from_pretrained(directory), AutoTokenizer.from_pretrained(directory)


def _features(out: object) -> torch.Tensor:
    return out if torch.is_tensor(out) else out.pooler_output  # transformers 4 vs 5 return types


def _reference_embeddings(directory: Path, images: list[Image.Image], texts: list[str]):
    model, processor, tokenizer = _reference(directory)
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"] if images else torch.zeros(0)
        img = _features(model.get_image_features(pixel_values=pixels)) if images else torch.zeros(0, 1)
        tok = tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        txt = _features(model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask))
    img = torch.nn.functional.normalize(img, dim=-1).numpy()
    txt = torch.nn.functional.normalize(txt, dim=-1).numpy()
    return img, txt, float(model.logit_scale.detach().exp()), pixels


def _encoder(directory: Path, tmp_path: Path, **kwargs: object) -> ClipEncoder:
    """fp32: the reference comparison is exact to 1e-4 (`auto` may pick bf16, tested separately)."""
    kwargs.setdefault("precision", "fp32")
    return ClipEncoder.from_weights(
        resolve_weights(str(directory), tmp_path / "models"), device="cpu", **kwargs
    )


def _assert_matches_reference(directory: Path, tmp_path: Path) -> None:
    images = _images()
    ref_img, ref_txt, ref_scale, ref_pixels = _reference_embeddings(directory, images, TEXTS)
    encoder = _encoder(directory, tmp_path)

    ours_pixels = torch.stack([preprocess_image(im, encoder.preprocess) for im in images])
    assert torch.allclose(ours_pixels, ref_pixels, atol=1e-5), "preprocessing differs from CLIPProcessor"

    ours_img = encoder.encode_images(images)
    ours_txt = encoder.encode_texts(TEXTS)
    assert ours_img.dtype == np.float32 and ours_txt.dtype == np.float32
    np.testing.assert_allclose(ours_img, ref_img, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours_txt, ref_txt, atol=1e-4, rtol=0)
    assert encoder.logit_scale == pytest.approx(ref_scale, rel=1e-6)

    labels = LabelSet.from_texts(
        ["adipose tissue", "debris", "lymphocytes", "mucus"], ["An H&E image patch of {}."]
    )
    ref_label_txt = _reference_embeddings(directory, [], [p[0] for p in labels.prompts("")])[1]
    ref_probs = torch.softmax(torch.from_numpy(ref_scale * ref_img @ ref_label_txt.T), dim=-1).numpy()
    ours_probs = ZeroShotClassifier(encoder).probabilities(ours_img, labels)
    np.testing.assert_allclose(ours_probs, ref_probs, atol=1e-4, rtol=0)


def test_tiny_checkpoint_matches_transformers(tiny_checkpoint: Path, tmp_path: Path) -> None:
    _assert_matches_reference(tiny_checkpoint, tmp_path)


@pytest.mark.slow
def test_full_vit_b32_checkpoint_matches_transformers(vit_b32_checkpoint: Path, tmp_path: Path) -> None:
    """PLIP's exact shape (ViT-B/32 image tower, 12-layer 512-wide text tower, 512-d embeddings)."""
    _assert_matches_reference(vit_b32_checkpoint, tmp_path)


def test_pytorch_model_bin_and_gelu_checkpoints_match(tmp_path: Path) -> None:
    """Old-style pytorch_model.bin files load too, and a GELU CLIP is not forced into QuickGELU."""
    directory = tmp_path / "gelu-bin"
    make_hf_clip(directory, TINY, seed=5, hidden_act="gelu", safe_serialization=False)
    assert (directory / "pytorch_model.bin").exists()
    _assert_matches_reference(directory, tmp_path)


def test_wrong_activation_would_be_visible(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Guard on the guard: loading QuickGELU weights as GELU changes embeddings well above 1e-4."""
    from safetensors.torch import load_file

    from model.loading import build_clip

    weights = resolve_weights(str(tiny_checkpoint), tmp_path / "models")
    state = load_file(str(weights.safetensors_path))
    right = build_clip(weights.open_clip_config, dict(state))
    wrong = build_clip({**weights.open_clip_config, "quick_gelu": False}, dict(state))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (right.encode_image(x, normalize=True) - wrong.encode_image(x, normalize=True)).abs().max()
    assert diff > 1e-3


def test_open_clip_native_checkpoint_matches_open_clip(tmp_path: Path) -> None:
    """open_clip-format checkpoints (QuiltNet's layout) load and agree with open_clip itself."""
    import json

    from open_clip.model import CLIP
    from safetensors.torch import load_file

    from tests.checkpoints import make_open_clip_checkpoint

    directory = tmp_path / "oc"
    make_open_clip_checkpoint(directory, seed=2)
    cfg = json.loads((directory / "open_clip_config.json").read_text())["model_cfg"]
    reference = CLIP(**cfg).eval()
    reference.load_state_dict(load_file(str(directory / "open_clip_model.safetensors")))
    encoder = _encoder(directory, tmp_path)
    images = _images()[:2]
    pixels = torch.stack([preprocess_image(im, PreprocessSpec()) for im in images])
    with torch.no_grad():
        ref = reference.encode_image(pixels, normalize=True).numpy()
    np.testing.assert_allclose(encoder.encode_images(images), ref, atol=1e-5)
    assert encoder.identity.title.startswith("local checkpoint")


def test_sparse_legacy_config_uses_transformers_defaults(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Older config.json files keep only non-default fields, sometimes under `*_config_dict`."""
    import json
    import shutil

    from model.convert import open_clip_config_from_hf

    full = json.loads((tiny_checkpoint / "config.json").read_text())
    sparse = {
        "model_type": "clip",
        "projection_dim": full["projection_dim"],
        "text_config_dict": {
            k: full["text_config"][k]
            for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
        },
        "vision_config": {
            k: full["vision_config"][k]
            for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers")
        },
    }
    assert open_clip_config_from_hf(sparse) == open_clip_config_from_hf(full)
    copy = tmp_path / "sparse"
    shutil.copytree(tiny_checkpoint, copy)
    (copy / "config.json").write_text(json.dumps(sparse))
    ours = _encoder(copy, tmp_path).encode_texts(TEXTS[:2])
    reference = _encoder(tiny_checkpoint, tmp_path / "b").encode_texts(TEXTS[:2])
    np.testing.assert_allclose(ours, reference, atol=1e-6)
