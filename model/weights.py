"""Find, download, verify and convert weights; cache them as one safetensors file per model.

Resolution order: an explicit local path, then the converted cache under the data directory, then a
download from the Hugging Face Hub (pinned revision) when online. Conversion happens once; later loads
read a float32 safetensors file straight into a model built on the meta device, which is what makes a
warm start fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file, save_file

from model.convert import (
    convert_hf_clip_state_dict,
    normalise_open_clip_state_dict,
    open_clip_config_from_hf,
)
from model.identity import ModelIdentity
from model.registry import PLIP_TEMPLATE, REGISTRY, ModelSpec, PreprocessSpec, WeightsFormat
from plipbot.errors import UnknownModelError, WeightsMissingError

CACHE_FORMAT_VERSION = 1
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
OPEN_CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ResolvedWeights:
    """Everything needed to build an encoder: converted weights on disk plus how to use them."""

    identity: ModelIdentity
    open_clip_config: dict[str, Any]
    safetensors_path: Path
    preprocess: PreprocessSpec
    default_template: str


def resolve_weights(model_ref: str, models_dir: Path, *, offline: bool = False) -> ResolvedWeights:
    """Turn `--model` (registry name or local path) into converted, cached weights."""
    path = Path(model_ref).expanduser()
    if model_ref in REGISTRY:
        return _resolve_registry(REGISTRY[model_ref], models_dir, offline=offline)
    if path.exists():
        return _resolve_local(path.resolve(), models_dir)
    looks_like_path = os.sep in model_ref or model_ref.startswith(".")
    if looks_like_path:
        raise UnknownModelError(f"No model at {model_ref}: the path does not exist.")
    known = ", ".join(sorted(REGISTRY))
    raise UnknownModelError(f"Unknown model '{model_ref}'. Use one of: {known}, or a local checkpoint path.")


# ---------------------------------------------------------------- registry models


def _cache_dir(models_dir: Path, spec: ModelSpec, revision: str) -> Path:
    return models_dir / spec.name / revision[:12]


def _resolve_registry(spec: ModelSpec, models_dir: Path, *, offline: bool) -> ResolvedWeights:
    cached = _find_cached_registry(spec, models_dir)
    if cached is not None:
        return cached
    if offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False"):
        raise WeightsMissingError(
            f"{spec.title} weights are not cached in {models_dir} and downloads are off: run "
            f"`plipbot model fetch {spec.name}` where the Hugging Face Hub is reachable, "
            "or pass --model PATH."
        )
    return fetch_registry_model(spec, models_dir)


def _find_cached_registry(spec: ModelSpec, models_dir: Path) -> ResolvedWeights | None:
    base = models_dir / spec.name
    if spec.revision is not None:
        candidates = [_cache_dir(models_dir, spec, spec.revision)]
    else:  # unpinned: the newest converted snapshot
        candidates = sorted(base.glob("*/model.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        candidates = [p.parent for p in candidates]
    for directory in candidates:
        resolved = _read_cache(directory)
        if resolved is not None:
            return resolved
    return None


def _hub_reachable(timeout_s: float = 3.0) -> str | None:
    """Return None when the Hub's host resolves and accepts a connection, else the reason.

    huggingface_hub retries for ~25 s before giving up on a machine without internet; a quick probe
    turns that into an immediate, one-line answer.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as err:
        return f"{host} is unreachable ({err.strerror or err})"


def fetch_registry_model(spec: ModelSpec, models_dir: Path) -> ResolvedWeights:
    """Download (pinned revision), verify the published hash, convert and cache a registry model."""
    reason = _hub_reachable()
    if reason is not None:
        raise WeightsMissingError(
            f"{spec.title} weights are not cached and cannot be downloaded: {reason}. Run "
            f"`plipbot model fetch {spec.name}` where the Hugging Face Hub is reachable, "
            "or pass --model PATH."
        )
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    hub_cache = models_dir / "hub"
    try:
        revision = spec.revision or HfApi().model_info(spec.repo_id).sha or "main"
        config_name, weight_names = (
            ("config.json", HF_WEIGHT_FILES)
            if spec.weights_format is WeightsFormat.HF_CLIP
            else ("open_clip_config.json", OPEN_CLIP_WEIGHT_FILES)
        )
        preferred = [n for n in weight_names if n in spec.weights_sha256] + list(weight_names)
        config_path = Path(hf_hub_download(spec.repo_id, config_name, revision=revision, cache_dir=hub_cache))
        weights_path: Path | None = None
        for name in dict.fromkeys(preferred):
            try:
                weights_path = Path(
                    hf_hub_download(spec.repo_id, name, revision=revision, cache_dir=hub_cache)
                )
                break
            except (HfHubHTTPError, LocalEntryNotFoundError):
                continue
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise WeightsMissingError(
            f"Could not download {spec.title} from the Hugging Face Hub: {err}"
        ) from err
    if weights_path is None:
        raise WeightsMissingError(
            f"{spec.repo_id}@{revision} has none of the weight files {list(weight_names)}."
        )
    digest = sha256_file(weights_path)
    expected = spec.weights_sha256.get(weights_path.name)
    if expected is not None and digest != expected:
        raise WeightsMissingError(
            f"{spec.title} weights from {spec.repo_id}@{revision} do not match the published SHA-256; "
            "refusing them."
        )
    identity = ModelIdentity(
        name=spec.name,
        title=spec.title,
        source=spec.repo_id,
        revision=revision,
        verified=expected is not None,
    )
    return convert_and_cache(
        config_path=config_path,
        weights_path=weights_path,
        weights_format=spec.weights_format,
        identity=identity,
        preprocess=spec.preprocess,
        default_template=spec.default_template,
        out_dir=_cache_dir(models_dir, spec, revision),
        weights_sha256=digest,
    )


# ---------------------------------------------------------------- local checkpoints


def _detect_local(path: Path) -> tuple[WeightsFormat, Path, Path]:
    """Return (format, config, weights) for a local checkpoint directory or file."""
    directory = path if path.is_dir() else path.parent
    if (directory / "config.json").exists():
        for name in HF_WEIGHT_FILES:
            if (directory / name).exists():
                return WeightsFormat.HF_CLIP, directory / "config.json", directory / name
    if (directory / "open_clip_config.json").exists():
        weight = path if path.is_file() else None
        for name in OPEN_CLIP_WEIGHT_FILES:
            if weight is None and (directory / name).exists():
                weight = directory / name
        if weight is not None:
            return WeightsFormat.OPEN_CLIP, directory / "open_clip_config.json", weight
    raise UnknownModelError(
        f"{path} is not a checkpoint: expected config.json with model.safetensors or pytorch_model.bin "
        "(transformers CLIPModel), or open_clip_config.json with open_clip weights."
    )


def _resolve_local(path: Path, models_dir: Path) -> ResolvedWeights:
    fmt, config_path, weights_path = _detect_local(path)
    stat = weights_path.stat()
    fingerprint = hashlib.sha256(f"{weights_path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    out_dir = models_dir / "local" / fingerprint[:16]
    cached = _read_cache(out_dir)
    if cached is not None:
        return cached
    digest = sha256_file(weights_path)
    identity = _identity_for_local(weights_path, digest)
    template = PLIP_TEMPLATE
    preprocess = PreprocessSpec()
    if fmt is WeightsFormat.OPEN_CLIP:
        preprocess = _open_clip_preprocess(json.loads(config_path.read_text()))
    return convert_and_cache(
        config_path=config_path,
        weights_path=weights_path,
        weights_format=fmt,
        identity=identity,
        preprocess=preprocess,
        default_template=template,
        out_dir=out_dir,
        weights_sha256=digest,
    )


def _identity_for_local(weights_path: Path, digest: str) -> ModelIdentity:
    """A local copy of a published checkpoint keeps its name; anything else is "local checkpoint"."""
    for spec in REGISTRY.values():
        if weights_path.name in spec.weights_sha256 and spec.weights_sha256[weights_path.name] == digest:
            return ModelIdentity(
                name=spec.name,
                title=spec.title,
                source=spec.repo_id,
                revision=spec.revision or digest,
                verified=True,
            )
    return ModelIdentity(
        name="local",
        title=f"local checkpoint {weights_path.parent.name}",
        source=str(weights_path.parent),
        revision=f"sha256:{digest}",
    )


def _open_clip_preprocess(config: dict[str, Any]) -> PreprocessSpec:
    pp = config.get("preprocess_cfg") or {}
    image_size = config.get("model_cfg", {}).get("vision_cfg", {}).get("image_size", 224)
    default = PreprocessSpec()
    return PreprocessSpec(
        size=int(pp.get("size", image_size) if not isinstance(pp.get("size"), list) else pp["size"][0]),
        mean=tuple(pp.get("mean", default.mean)),  # type: ignore[arg-type]
        std=tuple(pp.get("std", default.std)),  # type: ignore[arg-type]
        interpolation=str(pp.get("interpolation", "bicubic")),
    )


# ---------------------------------------------------------------- conversion and cache


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (weights are hundreds of MB)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _load_raw_state_dict(weights_path: Path) -> dict[str, torch.Tensor]:
    if weights_path.suffix == ".safetensors":
        return load_file(str(weights_path))
    # weights_only: a checkpoint is data, never code.
    loaded = torch.load(weights_path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise UnknownModelError(f"{weights_path} does not hold a state dict.")
    return loaded


def convert_and_cache(
    *,
    config_path: Path,
    weights_path: Path,
    weights_format: WeightsFormat,
    identity: ModelIdentity,
    preprocess: PreprocessSpec,
    default_template: str,
    out_dir: Path,
    weights_sha256: str,
) -> ResolvedWeights:
    """Convert a checkpoint to an open_clip float32 safetensors file plus a JSON manifest."""
    config = json.loads(config_path.read_text())
    raw = _load_raw_state_dict(weights_path)
    if weights_format is WeightsFormat.HF_CLIP:
        oc_config = open_clip_config_from_hf(config)
        state = convert_hf_clip_state_dict(raw, oc_config)
    else:
        oc_config = dict(config.get("model_cfg", config))
        oc_config.pop("custom_text", None)
        state = normalise_open_clip_state_dict(raw)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(out_dir / "model.safetensors")
    manifest = {
        "format_version": CACHE_FORMAT_VERSION,
        "identity": asdict(identity),
        "open_clip_config": oc_config,
        "preprocess": asdict(preprocess),
        "default_template": default_template,
        "source_weights_sha256": weights_sha256,
    }
    tmp_manifest = out_dir / "model.json.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2))
    tmp_manifest.replace(out_dir / "model.json")  # written last: its presence marks a complete cache
    resolved = _read_cache(out_dir)
    assert resolved is not None
    return resolved


def _read_cache(directory: Path) -> ResolvedWeights | None:
    manifest_path = directory / "model.json"
    weights = directory / "model.safetensors"
    if not (manifest_path.exists() and weights.exists()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return None
    if manifest.get("format_version") != CACHE_FORMAT_VERSION:
        return None
    pp = manifest["preprocess"]
    return ResolvedWeights(
        identity=ModelIdentity(**manifest["identity"]),
        open_clip_config=manifest["open_clip_config"],
        safetensors_path=weights,
        preprocess=PreprocessSpec(
            size=pp["size"], mean=tuple(pp["mean"]), std=tuple(pp["std"]), interpolation=pp["interpolation"]
        ),
        default_template=manifest["default_template"],
    )


def cached_registry_weights(name: str, models_dir: Path) -> ResolvedWeights | None:
    """The cached weights of a registry model, or None (for `plipbot model list|info`)."""
    return _find_cached_registry(REGISTRY[name], models_dir)
