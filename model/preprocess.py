"""PLIP's evaluation transform, pixel for pixel.

Bicubic resize of the shortest side (Pillow, on 8-bit RGB), centre crop with the crop origin rounded
down, scale to [0, 1], normalise with CLIP's mean and std. This is what transformers'
`CLIPImageProcessor` did when PLIP was evaluated (now `CLIPImageProcessorPil`), and the tests hold
us to it. torchvision's Resize/CenterCrop differ by a pixel of crop offset on odd margins, which is why
this is written out rather than borrowed.
"""

from __future__ import annotations

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


def preprocess_image(image: Image.Image, spec: PreprocessSpec) -> torch.Tensor:
    """RGB PIL image -> normalised float32 CHW tensor of `spec.size` squared."""
    if image.mode != "RGB":
        raise ValueError(f"preprocess_image expects RGB, got {image.mode}; convert with model.images.to_rgb")
    cropped = center_crop(resize_shortest_side(image, spec.size, spec.interpolation), spec.size)
    pixels = np.asarray(cropped, dtype=np.float32) * np.float32(1 / 255)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    normalised = (pixels - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))


def preprocess_batch(images: list[Image.Image], spec: PreprocessSpec) -> torch.Tensor:
    """Stack preprocessed images into an NCHW batch."""
    return torch.stack([preprocess_image(im, spec) for im in images])
