"""Build an open_clip CLIP from converted weights without paying for random initialisation.

The model is constructed with initialisation switched off (`torch.nn.init` and `torch.randn` return
uninitialised tensors while it is built, under a lock), then the safetensors tensors are assigned in
place. This replaces constructing on the meta device, which costs the same but imports
`torch._dynamo` (~1 s of every `plipbot classify`) through PrimTorch's meta `randn`. Only the text
tower's causal mask is a non-persistent buffer that the state dict does not carry, so it is rebuilt
here; any other tensor the file does not provide is an error, never left uninitialised.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from safetensors.torch import load_file

from model.open_clip_lite import CLIP
from model.weights import ResolvedWeights
from plipbot.errors import UnknownModelError


def causal_mask(context_length: int) -> torch.Tensor:
    """The additive attention mask open_clip's text transformer expects (upper triangle -inf)."""
    return torch.full((context_length, context_length), float("-inf")).triu_(1)


_INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "orthogonal_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
)  # fmt: skip
_no_init_lock = threading.Lock()


@contextmanager
def _no_init() -> Iterator[None]:
    """Module constructors allocate but do not initialise (their weights are overwritten next)."""

    def keep(tensor: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
        return tensor

    def empty(*size: Any, **kwargs: Any) -> torch.Tensor:
        kwargs.pop("generator", None)
        return torch.empty(*size, **kwargs)

    with _no_init_lock:
        saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
        saved_randn = torch.randn
        try:
            for name in _INIT_FUNCTIONS:
                setattr(torch.nn.init, name, keep)
            torch.randn = empty  # type: ignore[assignment]
            yield
        finally:
            for name, fn in saved.items():
                setattr(torch.nn.init, name, fn)
            torch.randn = saved_randn  # type: ignore[assignment]


def build_clip(open_clip_config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> CLIP:
    """Instantiate `CLIP(**config)` without init and assign the weights (strict: every key must match)."""
    with _no_init():
        model = CLIP(**open_clip_config)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as err:
        raise UnknownModelError(
            f"The weights do not fit the architecture: {str(err).splitlines()[0]}"
        ) from err
    model.attn_mask = causal_mask(model.context_length)
    given = set(state_dict) | {"attn_mask"}
    leftovers = [n for n, _ in [*model.named_parameters(), *model.named_buffers()] if n not in given]
    if leftovers:
        raise UnknownModelError(f"Weights missing for {leftovers[:3]} after loading.")
    return model.eval().requires_grad_(False)


def load_clip(weights: ResolvedWeights) -> CLIP:
    """Read the cached safetensors file and build the model on CPU (the encoder moves it)."""
    return build_clip(weights.open_clip_config, load_file(str(weights.safetensors_path)))
