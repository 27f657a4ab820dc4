"""Build an open_clip CLIP from converted weights without paying for random initialisation.

The model is constructed on the meta device (no memory, no init), then the safetensors tensors are
assigned in place. Only the text tower's causal mask is a non-persistent buffer that the state dict
does not carry, so it is rebuilt here.
"""

from __future__ import annotations

from typing import Any

import torch
from safetensors.torch import load_file

from model.open_clip_lite import CLIP
from model.weights import ResolvedWeights
from plipbot.errors import UnknownModelError


def causal_mask(context_length: int) -> torch.Tensor:
    """The additive attention mask open_clip's text transformer expects (upper triangle -inf)."""
    return torch.full((context_length, context_length), float("-inf")).triu_(1)


def build_clip(open_clip_config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> CLIP:
    """Instantiate `CLIP(**config)` on meta and assign the weights (strict: every key must match)."""
    with torch.device("meta"):
        model = CLIP(**open_clip_config)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise UnknownModelError(
            f"The weights do not fit the architecture: {str(err).splitlines()[0]}"
        ) from err
    model.attn_mask = causal_mask(model.context_length)
    leftovers = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise UnknownModelError(f"Weights missing for {leftovers[:3]} after loading.")
    return model.eval().requires_grad_(False)


def load_clip(weights: ResolvedWeights) -> CLIP:
    """Read the cached safetensors file and build the model on CPU (the encoder moves it)."""
    return build_clip(weights.open_clip_config, load_file(str(weights.safetensors_path)))
