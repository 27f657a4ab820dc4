"""The registry of named models: where each one's weights come from and how it must be run.

Architectures, weights and preprocessing are data (the open_clip way), so adding a peer model is one
entry here, not code. Revisions are pinned: a name always means the same bytes, and the revision is
part of every answer and of every vector collection's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PLIP_TEMPLATE = "An H&E image patch of {}."


class WeightsFormat(StrEnum):
    """How a checkpoint is laid out on disk."""

    HF_CLIP = "hf-clip"  # transformers CLIPModel: config.json + model.safetensors | pytorch_model.bin
    OPEN_CLIP = (
        "open-clip"  # open_clip_config.json + open_clip_model.safetensors | open_clip_pytorch_model.bin
    )


@dataclass(frozen=True)
class PreprocessSpec:
    """The evaluation transform: shortest side to `size` (bicubic), centre crop, normalise."""

    size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class ModelSpec:
    """One named model: its source, pinned revision, architecture and how to prompt it."""

    name: str
    title: str
    repo_id: str
    revision: str | None
    weights_format: WeightsFormat
    architecture: str
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    default_template: str = PLIP_TEMPLATE
    # SHA-256 of the published weights file, when known: a cached or downloaded file that does not match
    # is refused, so an answer labelled "PLIP" is PLIP.
    weights_sha256: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def short_revision(self) -> str:
        """First 8 characters of the revision, for display and collection names."""
        return (self.revision or "unpinned")[:8]


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="plip",
            title="PLIP",
            repo_id="vinid/plip",
            revision="67ade53ddd32195868f422585f72698ef5d15094",
            weights_format=WeightsFormat.HF_CLIP,
            architecture="ViT-B-32-quickgelu",
            default_template=PLIP_TEMPLATE,
            weights_sha256={
                "pytorch_model.bin": "98a7f8d2a1f4a8fc8f6dedb3a16ff7efbe02a7ef67c93904c80bca9767c69630"
            },
            description="Pathology Language-Image Pretraining (Huang et al., Nature Medicine 2023): CLIP "
            "ViT-B/32 fine-tuned on 208,414 pathology image-text pairs from medical Twitter.",
        ),
        ModelSpec(
            name="clip",
            title="CLIP ViT-B/32 (OpenAI)",
            repo_id="openai/clip-vit-base-patch32",
            revision="3d74acf9a28c67741b2f4f2ea7635f0aaf6f0268",
            weights_format=WeightsFormat.HF_CLIP,
            architecture="ViT-B-32-quickgelu",
            default_template="a photo of {}.",
            description="OpenAI CLIP ViT-B/32, the general-domain baseline PLIP is compared against.",
        ),
        ModelSpec(
            name="quiltnet",
            title="QuiltNet-B-32",
            repo_id="wisdomik/QuiltNet-B-32",
            # No verified commit hash was available when this entry was written: downloads take the
            # default branch and the resolved commit is recorded in the cache and in every answer.
            revision=None,
            weights_format=WeightsFormat.OPEN_CLIP,
            architecture="ViT-B-32",
            default_template="a histopathology image of {}.",
            description="open_clip ViT-B/32 trained on Quilt-1M (histopathology videos), MIT licence.",
        ),
    )
}
