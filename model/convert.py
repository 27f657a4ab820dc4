"""Convert a transformers `CLIPModel` checkpoint into an open_clip `CLIP` state dict.

PLIP is published only in transformers format; open_clip is our runtime. The two layouts differ in
names (HF's `pre_layrnorm`, `layer_norm1`...), in attention (HF keeps separate q/k/v projections,
open_clip one packed `in_proj`) and in the projections (HF `Linear` weights are the transpose of
open_clip's matrices). Activations matter too: CLIP ViT-B/32 uses QuickGELU, and loading it into a
GELU model is wrong by ~2.5e-2, so the activation comes from the checkpoint's own config.
"""

from __future__ import annotations

from typing import Any

import torch

from plipbot.errors import UnknownModelError

OpenClipConfig = dict[str, Any]


def _activation_is_quick_gelu(text_cfg: dict[str, Any], vision_cfg: dict[str, Any]) -> bool:
    acts = {text_cfg.get("hidden_act", "quick_gelu"), vision_cfg.get("hidden_act", "quick_gelu")}
    if acts == {"quick_gelu"}:
        return True
    if acts <= {"gelu"}:
        return False
    raise UnknownModelError(f"Unsupported CLIP activation(s) {sorted(acts)}: expected quick_gelu or gelu.")


# transformers' CLIPTextConfig / CLIPVisionConfig defaults: older config.json files (and some exports)
# store only the fields that differ from them, in `text_config` or the legacy `text_config_dict`.
HF_TEXT_DEFAULTS: dict[str, Any] = {
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_attention_heads": 8,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
HF_VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}


def _section(hf_config: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    given = hf_config.get(name) or hf_config.get(f"{name}_dict") or {}
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def open_clip_config_from_hf(hf_config: dict[str, Any]) -> OpenClipConfig:
    """Map a transformers CLIPConfig (as loaded from config.json) to open_clip `CLIP(**cfg)` kwargs."""
    if hf_config.get("model_type", "clip") != "clip":
        raise UnknownModelError(f"config.json describes a '{hf_config.get('model_type')}' model, not CLIP.")
    try:
        text = _section(hf_config, "text_config", HF_TEXT_DEFAULTS)
        vision = _section(hf_config, "vision_config", HF_VISION_DEFAULTS)
        embed_dim = int(hf_config.get("projection_dim", 512))
        v_width, v_heads = int(vision["hidden_size"]), int(vision["num_attention_heads"])
        t_width = int(text["hidden_size"])
        t_heads = int(text["num_attention_heads"])
        v_eps = float(vision.get("layer_norm_eps", 1e-5))
        t_eps = float(text.get("layer_norm_eps", 1e-5))
        cfg: OpenClipConfig = {
            "embed_dim": embed_dim,
            "quick_gelu": _activation_is_quick_gelu(text, vision),
            "vision_cfg": {
                "image_size": int(vision.get("image_size", 224)),
                "patch_size": int(vision["patch_size"]),
                "width": v_width,
                "layers": int(vision["num_hidden_layers"]),
                "head_width": v_width // v_heads,
                "mlp_ratio": int(vision["intermediate_size"]) / v_width,
            },
            "text_cfg": {
                "context_length": int(text.get("max_position_embeddings", 77)),
                "vocab_size": int(text.get("vocab_size", 49408)),
                "width": t_width,
                "heads": t_heads,
                "layers": int(text["num_hidden_layers"]),
                "mlp_ratio": int(text["intermediate_size"]) / t_width,
            },
        }
    except (KeyError, TypeError, ValueError) as err:
        raise UnknownModelError(f"config.json is not a CLIPModel config (missing or bad {err}).") from err
    if v_eps != 1e-5:
        cfg["vision_cfg"]["norm_kwargs"] = {"eps": v_eps}
    if t_eps != 1e-5:
        cfg["text_cfg"]["norm_kwargs"] = {"eps": t_eps}
    return cfg


def _tower(sd: dict[str, torch.Tensor], src: str, dst: str, layers: int) -> dict[str, torch.Tensor]:
    """Convert one transformer stack (text or vision) layer by layer."""
    out: dict[str, torch.Tensor] = {}
    for i in range(layers):
        s, d = f"{src}.encoder.layers.{i}", f"{dst}.resblocks.{i}"
        attn = f"{s}.self_attn"
        out[f"{d}.attn.in_proj_weight"] = torch.cat(
            [sd[f"{attn}.q_proj.weight"], sd[f"{attn}.k_proj.weight"], sd[f"{attn}.v_proj.weight"]]
        )
        out[f"{d}.attn.in_proj_bias"] = torch.cat(
            [sd[f"{attn}.q_proj.bias"], sd[f"{attn}.k_proj.bias"], sd[f"{attn}.v_proj.bias"]]
        )
        for kind in ("weight", "bias"):
            out[f"{d}.attn.out_proj.{kind}"] = sd[f"{attn}.out_proj.{kind}"]
            out[f"{d}.ln_1.{kind}"] = sd[f"{s}.layer_norm1.{kind}"]
            out[f"{d}.ln_2.{kind}"] = sd[f"{s}.layer_norm2.{kind}"]
            out[f"{d}.mlp.c_fc.{kind}"] = sd[f"{s}.mlp.fc1.{kind}"]
            out[f"{d}.mlp.c_proj.{kind}"] = sd[f"{s}.mlp.fc2.{kind}"]
    return out


def convert_hf_clip_state_dict(sd: dict[str, torch.Tensor], cfg: OpenClipConfig) -> dict[str, torch.Tensor]:
    """Return an open_clip `CLIP` state dict holding exactly the weights of a transformers CLIPModel."""
    # Some exports prefix every key (e.g. "clip."); strip up to the first known root.
    sd = {_strip_prefix(k): v for k, v in sd.items()}
    try:
        out: dict[str, torch.Tensor] = {
            "logit_scale": sd["logit_scale"],
            "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
            "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
            "ln_final.weight": sd["text_model.final_layer_norm.weight"],
            "ln_final.bias": sd["text_model.final_layer_norm.bias"],
            "text_projection": sd["text_projection.weight"].T,
            "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
            "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
            "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
            "visual.ln_pre.weight": sd["vision_model.pre_layrnorm.weight"],
            "visual.ln_pre.bias": sd["vision_model.pre_layrnorm.bias"],
            "visual.ln_post.weight": sd["vision_model.post_layernorm.weight"],
            "visual.ln_post.bias": sd["vision_model.post_layernorm.bias"],
            "visual.proj": sd["visual_projection.weight"].T,
        }
        out |= _tower(sd, "text_model", "transformer", cfg["text_cfg"]["layers"])
        out |= _tower(sd, "vision_model", "visual.transformer", cfg["vision_cfg"]["layers"])
    except KeyError as err:
        raise UnknownModelError(f"The checkpoint is not a CLIPModel state dict (missing {err}).") from err
    # Contiguous copies: transposes are views, and safetensors stores contiguous tensors only.
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


_ROOTS = ("text_model.", "vision_model.", "visual_projection.", "text_projection.", "logit_scale")


def _strip_prefix(key: str) -> str:
    for root in _ROOTS:
        idx = key.find(root)
        if idx > 0 and key[idx - 1] == ".":
            return key[idx:]
    return key


def normalise_open_clip_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip checkpoints: unwrap `state_dict`, drop DDP's `module.` prefix, cast to float32."""
    if "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    cleaned = {k.removeprefix("module."): v for k, v in sd.items()}
    return {k: v.detach().to(torch.float32).contiguous() for k, v in cleaned.items() if torch.is_tensor(v)}
