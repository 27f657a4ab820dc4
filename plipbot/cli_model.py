"""Model commands: `embed`, `classify` and `model list|fetch|info`.

The JSON shapes here are a contract other parts and outside checks rely on (see README): change them
only together with their tests.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from plipbot.composition import Container
from plipbot.errors import InputFileError, LabelSetError

DISCLAIMER = "Decision support only, not a diagnosis."


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="registry name (plip, clip, quiltnet) or a local checkpoint path")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="numeric precision (default auto: the fastest safe one for this machine)",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="images or prompts per forward pass")
    p.add_argument("--data-dir", type=Path, dest="data_dir", help="caches, weights and stores")


def register(sub: Any) -> None:
    """Add this module's commands to the `plipbot` parser."""
    p = sub.add_parser("embed", help="write image and/or text embeddings to an .npz file")
    add_model_flags(p)
    p.add_argument("--images", nargs="+", default=[], metavar="PATH")
    p.add_argument("--texts", nargs="+", default=[], metavar="TEXT")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.npz")
    p.set_defaults(func=run_embed)

    p = sub.add_parser("classify", help="zero-shot label suggestions for images")
    add_model_flags(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels", nargs="*", metavar="LABEL", help="candidate labels")
    group.add_argument("--preset", help="a built-in label set (see `plipbot model presets`)")
    p.add_argument("--template", action="append", metavar="T", help="prompt template with {}; repeatable")
    p.add_argument("--top-k", type=int, default=None, dest="top_k")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_classify)

    model = sub.add_parser("model", help="list, fetch and describe models")
    msub = model.add_subparsers(dest="model_command", required=True)
    p = msub.add_parser("list", help="registry models and whether their weights are cached")
    p.add_argument("--data-dir", type=Path, dest="data_dir")
    p.set_defaults(func=run_model_list)
    p = msub.add_parser("fetch", help="download, verify and convert a registry model's weights")
    p.add_argument("name")
    p.add_argument("--data-dir", type=Path, dest="data_dir")
    p.set_defaults(func=run_model_fetch)
    p = msub.add_parser("info", help="details of a registry model or local checkpoint")
    p.add_argument("name")
    p.add_argument("--data-dir", type=Path, dest="data_dir")
    p.set_defaults(func=run_model_info)
    p = msub.add_parser("presets", help="built-in label sets")
    p.set_defaults(func=run_presets)


def load_images_or_fail(paths: list[str], container: Container) -> list[Any]:
    """Decode every image before the model loads, so a bad file fails fast and names itself."""
    from model.images import load_image
    from plipbot.errors import PlipbotError

    images = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise InputFileError(f"{raw}: no such file.")
        try:
            images.append(load_image(path, container.image_limits))
        except PlipbotError as err:
            raise type(err)(f"{raw}: {err.user_message}") from err
    return images


def run_embed(args: argparse.Namespace, container: Container) -> int:
    """`plipbot embed`: rows L2-normalised float32, in input order."""
    if not args.images and not args.texts:
        raise InputFileError("Nothing to embed: give --images and/or --texts.")
    images = load_images_or_fail(args.images, container)
    encoder = container.encoder
    empty = np.zeros((0, encoder.embed_dim), dtype=np.float32)
    image_emb = encoder.encode_images(images) if images else empty
    text_emb = encoder.encode_texts(args.texts) if args.texts else empty
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, image=image_emb, text=text_emb)
    print(f"wrote {args.out}: image {image_emb.shape}, text {text_emb.shape} ({encoder.identity.label})")
    return 0


def _label_set(args: argparse.Namespace) -> Any:
    from model.presets import DEFAULT_PRESET, get_preset
    from model.zeroshot import LabelSet

    if args.labels is not None:
        if not args.labels:
            raise LabelSetError("--labels needs at least one label.")
        label_set = LabelSet.from_texts(args.labels)
    else:
        label_set = get_preset(args.preset or DEFAULT_PRESET)
    if args.template:
        label_set = label_set.with_templates(args.template)
    return label_set


def run_classify(args: argparse.Namespace, container: Container) -> int:
    """`plipbot classify`: suggestions per image as a table or JSON."""
    label_set = _label_set(args)
    top_k = args.top_k or container.settings.zeroshot.top_k
    if top_k < 1:
        raise LabelSetError("--top-k must be at least 1.")
    images = load_images_or_fail(args.images, container)
    predictions = container.zero_shot.predict(images, label_set, top_k=top_k)
    if args.json:
        out = [{"image": path, **pred.as_dict()} for path, pred in zip(args.images, predictions, strict=True)]
        print(json.dumps(out, indent=2))
        return 0
    identity = container.encoder.identity
    for path, pred in zip(args.images, predictions, strict=True):
        print(f"{path}  [{label_set.name}]")
        width = max(len(s.label) for s in pred.suggestions)
        for rank, s in enumerate(pred.suggestions, 1):
            bar = "#" * round(s.probability * 30)
            print(f"  {rank}. {s.label:<{width}}  {s.probability:6.1%}  {bar}")
        if pred.uncertain:
            print(f"  uncertain: the top labels are close (margin {pred.margin:.2f}); treat as 'don't know'.")
    print(f"model: {identity.label}")
    print(DISCLAIMER)
    return 0


def run_model_list(args: argparse.Namespace, container: Container) -> int:
    """`plipbot model list`."""
    from model.registry import REGISTRY
    from model.weights import cached_registry_weights

    models_dir = container.settings.models_dir
    print(f"{'name':<10} {'revision':<10} {'cached':<7} source")
    for name, spec in sorted(REGISTRY.items()):
        cached = cached_registry_weights(name, models_dir)
        print(
            f"{name:<10} {spec.short_revision:<10} {'yes' if cached else 'no':<7} "
            f"{spec.repo_id}  {spec.title}"
        )
    print(f"weights directory: {models_dir}")
    return 0


def run_model_fetch(args: argparse.Namespace, container: Container) -> int:
    """`plipbot model fetch NAME`: download, verify and convert."""
    from model.registry import REGISTRY
    from model.weights import cached_registry_weights, fetch_registry_model, resolve_weights

    if args.name not in REGISTRY:  # a local checkpoint: converting it into the cache is the fetch
        resolved = resolve_weights(args.name, container.settings.models_dir, offline=True)
        print(f"{resolved.identity.label}: converted and cached in {resolved.safetensors_path.parent}")
        return 0
    spec = REGISTRY[args.name]
    cached = cached_registry_weights(args.name, container.settings.models_dir)
    resolved = cached or fetch_registry_model(spec, container.settings.models_dir)
    state = "already cached" if cached else "downloaded and converted"
    print(f"{resolved.identity.label}: {state} in {resolved.safetensors_path.parent}")
    return 0


def run_model_info(args: argparse.Namespace, container: Container) -> int:
    """`plipbot model info NAME|PATH`."""
    from model.registry import REGISTRY
    from model.weights import cached_registry_weights, resolve_weights

    models_dir = container.settings.models_dir
    if args.name in REGISTRY:
        spec = REGISTRY[args.name]
        cached = cached_registry_weights(args.name, models_dir)
        info: dict[str, Any] = {
            "name": spec.name,
            "title": spec.title,
            "source": f"hf-hub:{spec.repo_id}",
            "revision": spec.revision or "unpinned (default branch at download time)",
            "format": spec.weights_format.value,
            "architecture": spec.architecture,
            "default_template": spec.default_template,
            "preprocess": vars(spec.preprocess),
            "published_sha256": spec.weights_sha256 or None,
            "cached": str(cached.safetensors_path) if cached else None,
            "description": spec.description,
        }
    else:
        resolved = resolve_weights(args.name, models_dir, offline=True)
        info = {
            **resolved.identity.as_dict(),
            "architecture": resolved.open_clip_config,
            "default_template": resolved.default_template,
            "preprocess": vars(resolved.preprocess),
            "cached": str(resolved.safetensors_path),
        }
    for key, value in info.items():
        print(f"{key:>17}: {value}")
    return 0


def run_presets(args: argparse.Namespace, container: Container) -> int:
    """`plipbot model presets`."""
    from model.presets import get_preset, preset_names

    for name in preset_names():
        preset = get_preset(name)
        print(f"{name:<11} {len(preset.labels):>2} labels  {preset.description}")
    return 0
