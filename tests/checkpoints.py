"""Build small CLIP checkpoints locally, in the same formats as the published ones.

Weights cannot be downloaded on the CI machine, so every loading path is exercised on random
checkpoints written with `transformers.CLIPModel.save_pretrained` (and open_clip's own layout). They
are random: nothing built here is PLIP, and tests that use them must say so.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

TINY = {
    "projection_dim": 32,
    "text": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2, "num_hidden_layers": 2},
    "vision": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_attention_heads": 2,
        "num_hidden_layers": 2,
        "image_size": 224,
        "patch_size": 32,
    },
}
VIT_B_32 = {
    "projection_dim": 512,
    "text": {
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_attention_heads": 8,
        "num_hidden_layers": 12,
    },
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "image_size": 224,
        "patch_size": 32,
    },
}


def clip_bpe_vocab() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary and merges, rebuilt from the BPE file open_clip ships (as OpenAI's CLIP does)."""
    import open_clip.tokenizer as oct

    with gzip.open(oct.default_bpe(), "rt", encoding="utf-8") as fh:
        merges = fh.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write_clip_tokenizer(directory: Path) -> None:
    """vocab.json + merges.txt + tokenizer config, as in the `vinid/plip` repository."""
    vocab, merges = clip_bpe_vocab()
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True})
    )


def make_hf_clip(
    directory: Path,
    shape: dict = TINY,
    *,
    seed: int = 0,
    content_dominant: bool = False,
    hidden_act: str = "quick_gelu",
    safe_serialization: bool = True,
):
    """Save a random transformers CLIPModel (plus tokenizer and preprocessor files) into `directory`.

    `content_dominant` zeroes the class embedding and shrinks the position embeddings so that image
    content, not the shared bias of random weights, decides the embedding: without it every image maps
    to nearly the same direction and search or de-duplication tests prove nothing.
    """
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={**shape["text"], "hidden_act": hidden_act},
        vision_config={**shape["vision"], "hidden_act": hidden_act},
        projection_dim=shape["projection_dim"],
    )
    model = CLIPModel(config).eval()
    with torch.no_grad():
        # Random init leaves biases and norms at trivial values; perturb them so conversion mistakes
        # (a swapped bias, a missing norm) change the output and cannot pass unnoticed.
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.05)
        if content_dominant:
            model.vision_model.embeddings.class_embedding.zero_()
            model.vision_model.embeddings.position_embedding.weight.mul_(0.01)
            model.vision_model.embeddings.patch_embedding.weight.mul_(8.0)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if not safe_serialization:  # the legacy pickle layout PLIP was published in (pytorch_model.bin)
        (directory / "model.safetensors").unlink()
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    write_clip_tokenizer(directory)
    CLIPImageProcessorPil(
        size={"shortest_edge": shape["vision"]["image_size"]},
        crop_size={"height": shape["vision"]["image_size"], "width": shape["vision"]["image_size"]},
    ).save_pretrained(directory)
    return model


def make_open_clip_checkpoint(directory: Path, *, seed: int = 0) -> None:
    """Save a random open_clip ViT in open_clip's hub layout (open_clip_config.json + safetensors)."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }
    model = CLIP(**model_cfg)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(directory / "open_clip_model.safetensors"),
    )
    (directory / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": model_cfg,
                "preprocess_cfg": {
                    "mean": [0.48145466, 0.4578275, 0.40821073],
                    "std": [0.26862954, 0.26130258, 0.27577711],
                },
            }
        )
    )
