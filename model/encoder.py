"""The one encoder interface every part of plipbot uses.

`encode_images` / `encode_texts` take plain Python inputs and return L2-normalised float32 numpy
arrays, one row per input, in input order. Batching, device placement and precision are decided
here, once, from settings; callers never see torch.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model.identity import ModelIdentity
from model.images import to_rgb
from model.loading import load_clip
from model.open_clip_lite import CLIP, simple_tokenizer
from model.precision import PrecisionChoice, choose_precision
from model.preprocess import preprocess_batch
from model.registry import PreprocessSpec
from model.weights import ResolvedWeights
from plipbot.errors import PlipbotError

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}


def pick_device(requested: str) -> torch.device:
    """`auto` means the GPU when there is one; an explicit CUDA request without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PlipbotError(f"Device {requested} was requested but no CUDA GPU is available.")
    return device


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@dataclass(frozen=True)
class EncoderInfo:
    """What a worker logs and a reply shows: which model, where, how."""

    identity: ModelIdentity
    device: str
    precision: str
    embed_dim: int
    precision_reason: str = ""
    image_path: str = ""


class ClipEncoder:
    """A CLIP-family model (PLIP, CLIP, QuiltNet, local checkpoints) behind one interface."""

    def __init__(
        self,
        model: CLIP,
        *,
        identity: ModelIdentity,
        preprocess: PreprocessSpec,
        default_template: str,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 32,
        cache_dir: Path | None = None,
        fast_path: bool = True,
    ) -> None:
        self.identity = identity
        self.preprocess = preprocess
        self.default_template = default_template
        self.batch_size = batch_size
        self.device = pick_device(device)
        self.choice: PrecisionChoice = choose_precision(precision, self.device.type, cache_dir=cache_dir)
        resolved = self.choice.precision
        if resolved == "fp16" and self.device.type != "cuda":
            raise PlipbotError("fp16 needs a CUDA GPU; on CPU use auto, bf16 or fp32.")
        if resolved == "int8" and self.device.type != "cpu":
            raise PlipbotError("int8 runs on CPU only; on a GPU use auto, fp16 or bf16.")
        if resolved == "int8":
            log.warning(
                "precision int8 is experimental: not yet shown to match fp32 on real PLIP weights "
                "(cosine >= 0.999, top-1 agreement >= 99%); use auto or fp32 for answers that count"
            )
        self.precision = resolved
        self._dtype = _DTYPES[resolved]
        # Read before any cast: the temperature is reported and used in float64 softmax.
        self.logit_scale = float(model.logit_scale.detach().float().exp().clamp(max=100).item())
        self.embed_dim = int(model.text_projection.shape[1])
        # Images: the inference-only tower (model/fast_vision.py) when the architecture allows it,
        # with the weights cast (not autocast: that re-casts every weight on every call) and, on
        # CPU, pre-packed for oneDNN. Texts: open_clip's text tower, in fp32 on CPU whatever the
        # image precision: label-set embeddings are cached on disk and shared by every process, so
        # they must not depend on which precision the process that computed them happened to run.
        self._vision: Callable[[torch.Tensor], torch.Tensor]
        self.image_path = "open_clip"
        if resolved == "int8" and not fast_path:
            raise PlipbotError("int8 runs on the fast image tower only.")
        fast = self._fast_vision(model) if fast_path else None
        if fast is not None:
            self._vision = fast
            self.image_path = "fast"
            model.visual = None  # type: ignore[assignment]  # the fast tower holds its own copy
        self._text_dtype = self._dtype if self.device.type == "cuda" else torch.float32
        self._model = model.to(device=self.device, dtype=self._text_dtype)
        if fast is None:
            model.visual.to(dtype=self._dtype)
            self._vision = self._open_clip_images
        self._context_length = int(model.context_length)
        self._tokenizer: Any = None  # built on first use (see open_clip_lite.simple_tokenizer)

    def _fast_vision(self, model: CLIP) -> Callable[[torch.Tensor], torch.Tensor] | None:
        from model.fast_vision import FastVisionTower, unsupported_reason

        reason = unsupported_reason(model.visual)
        if reason is not None:
            log.info("image tower runs in open_clip: the fast path does not cover %s", reason)
            if self.precision == "int8":
                raise PlipbotError(f"int8 needs a plain ViT image tower; this model has {reason}.")
            return None
        with warnings.catch_warnings():  # torch flags its int8 tensor API as deprecated
            warnings.simplefilter("ignore", UserWarning)
            return FastVisionTower(
                model.visual, dtype=self._dtype, device=self.device, int8=self.precision == "int8"
            )

    def _open_clip_images(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._model.encode_image(pixels.to(device=self.device, dtype=self._dtype))

    @classmethod
    def from_weights(
        cls,
        weights: ResolvedWeights,
        *,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 32,
        cache_dir: Path | None = None,
        fast_path: bool = True,
    ) -> ClipEncoder:
        """Load cached, converted weights into an encoder (`cache_dir` keeps the precision probe)."""
        encoder = cls(
            load_clip(weights),
            identity=weights.identity,
            preprocess=weights.preprocess,
            default_template=weights.default_template,
            device=device,
            precision=precision,
            batch_size=batch_size,
            cache_dir=cache_dir,
            fast_path=fast_path,
        )
        log.info(
            "encoder ready: %s on %s, precision %s, %s image tower",
            weights.identity.label,
            encoder.device,
            encoder.choice.describe(),
            encoder.image_path,
        )
        return encoder

    @property
    def info(self) -> EncoderInfo:
        """Identity, device and precision, for logs and replies."""
        return EncoderInfo(
            self.identity,
            str(self.device),
            self.precision,
            self.embed_dim,
            precision_reason=self.choice.describe(),
            image_path=self.image_path,
        )

    def warm_up(self) -> None:
        """Run one image and one prompt through the model, so the first real request does not pay
        for oneDNN's kernel selection, lazy allocations and first-touch page faults."""
        size = self.preprocess.size
        self.encode_images([Image.new("RGB", (size, size), (200, 120, 160))])
        self.encode_texts([self.default_template.format("tissue")])

    @staticmethod
    def _normalise(features: torch.Tensor) -> np.ndarray:
        features = features.float()
        features = features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return features.cpu().numpy().astype(np.float32, copy=False)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images (any Pillow mode) -> (n, d) L2-normalised float32 embeddings."""
        out = np.empty((len(images), self.embed_dim), dtype=np.float32)
        for part in _batches(len(images), self.batch_size):
            batch = preprocess_batch([to_rgb(im) for im in images[part]], self.preprocess)
            out[part] = self._normalise(self._vision(batch))
        return out

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Already preprocessed (n, 3, size, size) float32 pixels -> (n, d) embeddings (benchmarks)."""
        return self._normalise(self._vision(pixels))

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP BPE tokens, truncated to the context length with the end-of-text token kept."""
        if self._tokenizer is None:
            self._tokenizer = simple_tokenizer(self._context_length)
        return self._tokenizer(list(texts))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, d) L2-normalised float32 embeddings."""
        out = np.empty((len(texts), self.embed_dim), dtype=np.float32)
        for part in _batches(len(texts), self.batch_size):
            tokens = self.tokenize(texts[part]).to(self.device)
            with torch.inference_mode():
                out[part] = self._normalise(self._model.encode_text(tokens))
        return out
