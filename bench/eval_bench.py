"""`plipbot eval zeroshot` over a Kather-like folder: a cold run, a cached rerun, and PLIP's own pipeline.

Weights and CRC-VAL-HE-7K cannot be downloaded here, so the benchmark builds a random checkpoint with
PLIP's exact shape (ViT-B/32) and a folder of 224x224 TIFF tiles in Kather's nine class folders (the
published format). Speed does not depend on weight values or tissue. The baseline is what PLIP's
authors run: transformers' CLIPProcessor + CLIPModel over the same files, in the same process.

    .venv/bin/python bench/eval_bench.py [--per-class 20] [--device cpu] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
from plipbot.cli import main as plipbot_main  # noqa: E402
from tests.checkpoints import VIT_B_32, make_hf_clip  # noqa: E402
from tests.imagegen import texture  # noqa: E402

KATHER_FOLDERS = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]


def make_dataset(root: Path, per_class: int) -> list[Path]:
    paths = []
    for c, name in enumerate(KATHER_FOLDERS):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = root / name / f"{name}-{i:04d}.tif"
            texture((224, 224), seed=c * 10_000 + i).save(path, format="TIFF")
            paths.append(path)
    return paths


def timed_eval(argv: list[str]) -> tuple[float, dict]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = plipbot_main(argv)
    elapsed = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"plipbot eval failed with exit code {code}")
    return elapsed, json.loads(out.getvalue())


def reference_embedding_s(checkpoint: Path, paths: list[Path], batch_size: int, device: str) -> float:
    """PLIP's pipeline: open each file, CLIPProcessor, CLIPModel.get_image_features, per batch."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(checkpoint).eval().to(device)
    processor = CLIPProcessor.from_pretrained(checkpoint)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[i : i + batch_size]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            model.get_image_features(pixel_values=pixels)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="plipbot-eval-bench-"))
    checkpoint = tmp / "random-vit-b-32"
    make_hf_clip(checkpoint, VIT_B_32, seed=0)
    dataset = tmp / "CRC-like"
    paths = make_dataset(dataset, args.per_class)
    n = len(paths)
    argv = [
        "eval", "zeroshot", "--model", str(checkpoint), "--dataset", str(dataset), "--preset", "kather",
        "--json", "--data-dir", str(tmp / "data"), "--out", str(tmp / "out"),
        "--device", args.device, "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    # Convert the checkpoint once outside the timings (a one-off per model, like `plipbot model fetch`).
    with contextlib.redirect_stdout(io.StringIO()):
        plipbot_main(["model", "info", str(checkpoint), "--data-dir", str(tmp / "data")])

    cold_s, cold = timed_eval(argv)
    warm_s, warm = timed_eval(argv)
    assert warm["weighted_f1"] == cold["weighted_f1"] and warm["confusion"] == cold["confusion"]
    reference_s = reference_embedding_s(checkpoint, paths, args.batch_size, args.device)

    print(f"plipbot eval zeroshot, {n} Kather-like 224x224 TIFF tiles, random ViT-B/32 (PLIP's shape)")
    print(f"CPU: {cpu_name()}; device {args.device}; batch {args.batch_size}")
    print()
    print(f"{'run':<50} {'total s':>8} {'ms/image':>9} {'vs reference':>13}")
    rows = [
        ("reference: CLIPProcessor + CLIPModel (embed only)", reference_s),
        ("plipbot eval, cold cache (load, embed, report)", cold_s),
        ("plipbot eval, cached rerun (load, read, report)", warm_s),
    ]
    for name, seconds in rows:
        ratio = reference_s / seconds
        print(f"{name:<50} {seconds:8.2f} {seconds / n * 1000:9.1f} {ratio:12.2f}x")
    print()
    print(f"cached rerun: {cold_s / warm_s:.1f}x faster than the cold run, same report")
    print("(plipbot's times include loading the model, encoding the prompts and drawing the PNGs)")


if __name__ == "__main__":
    main()
