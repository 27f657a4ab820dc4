"""PLIP's evaluation transform, pixel for pixel.

Bicubic resize of the shortest side (Pillow, on 8-bit RGB), centre crop with the crop origin rounded
down, scale to [0, 1], normalise with CLIP's mean and std. This is what transformers'
`CLIPImageProcessor` did when PLIP was evaluated (now `CLIPImageProcessorPil`), and the tests hold
us to it. torchvision's Resize/CenterCrop differ by a pixel of crop offset on odd margins, which is why
this is written out rather than borrowed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from model.registry import PreprocessSpec

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def resize_shortest_side(image: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    """Scale so the shorter side is `size`; the long side is truncated like transformers does."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return image.resize((new_w, new_h), resample=_RESAMPLE[interpolation])


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Crop the centre `size` x `size` (pads never happen: the short side is already `size`)."""
    width, height = image.size
    top, left = (height - size) // 2, (width - size) // 2
    return image.crop((left, top, left + size, top + size))


@lru_cache(maxsize=8)
def normalisation_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: the normalised value of every 8-bit level, per channel.

    Computed with the very float32 operations the reference applies to each pixel
    (`x * (1/255)`, then `(x - mean) / std`), so a table lookup gives bit-identical results in one pass
    instead of four full-image float passes and a transpose.
    """
    levels = np.arange(256, dtype=np.float32)[None, :] * np.float32(1 / 255)
    mean_col = np.asarray(mean, dtype=np.float32)[:, None]
    std_col = np.asarray(std, dtype=np.float32)[:, None]
    return np.ascontiguousarray((levels - mean_col) / std_col)


def _crop(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    if image.mode != "RGB":
        raise ValueError(f"preprocess_image expects RGB, got {image.mode}; convert with model.images.to_rgb")
    return np.asarray(center_crop(resize_shortest_side(image, spec.size, spec.interpolation), spec.size))


def preprocess_into(image: Image.Image, spec: PreprocessSpec, out: np.ndarray) -> None:
    """Write the normalised CHW float32 pixels of one RGB image into `out` (3, size, size)."""
    pixels = _crop(image, spec)
    table = normalisation_table(tuple(spec.mean), tuple(spec.std))
    for channel in range(3):
        np.take(table[channel], pixels[:, :, channel], out=out[channel])


def preprocess_image(image: Image.Image, spec: PreprocessSpec) -> torch.Tensor:
    """RGB PIL image -> normalised float32 CHW tensor of `spec.size` squared."""
    out = np.empty((3, spec.size, spec.size), dtype=np.float32)
    preprocess_into(image, spec, out)
    return torch.from_numpy(out)


def preprocess_batch(images: list[Image.Image], spec: PreprocessSpec) -> torch.Tensor:
    """Preprocess images straight into one NCHW batch (no per-image tensors, no stacking copy)."""
    out = np.empty((len(images), 3, spec.size, spec.size), dtype=np.float32)
    for row, image in enumerate(images):
        preprocess_into(image, spec, out[row])
    return torch.from_numpy(out)
