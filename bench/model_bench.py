"""Encoder throughput and load time on this machine, against transformers.CLIPModel in-process.

Weights cannot be downloaded here, so the benchmark builds a random checkpoint with PLIP's exact
shape (ViT-B/32, 512-d) in a temporary directory; speed does not depend on the weight values.

    .venv/bin/python bench/model_bench.py [--images 64] [--texts 256] [--device cpu]

Prints one table. Ratios compare with the reference implementation run in the same process, since
absolute numbers on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.encoder import ClipEncoder
from model.loading import load_clip
from model.preprocess import preprocess_batch
from model.weights import resolve_weights
from tests.checkpoints import VIT_B_32, make_hf_clip
from tests.imagegen import ihc


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest of `repeats` runs: the least disturbed by the machine's other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from transformers import CLIPModel

    tmp = Path(tempfile.mkdtemp(prefix="plipbot-bench-"))
    ckpt = tmp / "random-vit-b-32"
    make_hf_clip(ckpt, VIT_B_32, seed=0)
    models = tmp / "models"

    rows: list[tuple[str, str, str, str]] = []
    start = time.perf_counter()
    weights = resolve_weights(str(ckpt), models)
    convert_s = time.perf_counter() - start
    ours_load = best_of(lambda: load_clip(weights), 5)
    ref_load = best_of(lambda: CLIPModel.from_pretrained(ckpt), 3)
    rows.append(("first use: convert + cache", f"{convert_s:.2f} s", "", "once per model"))
    rows.append(
        (
            "load (cached safetensors)",
            f"{ours_load * 1000:.0f} ms",
            f"{ref_load * 1000:.0f} ms",
            f"{ref_load / ours_load:.1f}x faster",
        )
    )

    base = ihc()
    images = [base.rotate(i % 4 * 90) for i in range(args.images)]
    texts = [f"An H&E image patch of tissue class number {i}." for i in range(args.texts)]
    reference = CLIPModel.from_pretrained(ckpt).eval()

    for precision in ("fp32", "bf16"):
        for batch in (1, 32):
            enc = ClipEncoder.from_weights(weights, device=args.device, precision=precision, batch_size=batch)
            n = min(len(images), 16) if batch == 1 else len(images)
            t = best_of(lambda enc=enc, n=n: enc.encode_images(images[:n]), 2)
            ref_txt = ""
            ratio = ""
            if precision == "fp32":
                pixels = preprocess_batch(images[:n], enc.preprocess)

                def ref_run(pixels: torch.Tensor = pixels, batch: int = batch) -> None:
                    with torch.inference_mode():
                        for i in range(0, len(pixels), batch):
                            reference.get_image_features(pixel_values=pixels[i : i + batch])

                rt = best_of(ref_run, 2)
                ref_txt = f"{n / rt:.1f} img/s"
                ratio = f"{rt / t:.2f}x (incl. our preprocessing)"
            rows.append((f"images, batch {batch}, {precision}", f"{n / t:.1f} img/s", ref_txt, ratio))

    for precision in ("fp32", "bf16"):
        enc = ClipEncoder.from_weights(weights, device=args.device, precision=precision, batch_size=64)
        t = best_of(lambda enc=enc: enc.encode_texts(texts), 2)
        rows.append((f"text prompts, batch 64, {precision}", f"{len(texts) / t:.0f} prompts/s", "", ""))

    fp32 = ClipEncoder.from_weights(weights, device=args.device, precision="fp32")
    bf16 = ClipEncoder.from_weights(weights, device=args.device, precision="bf16")
    cos = (fp32.encode_images(images[:8]) * bf16.encode_images(images[:8])).sum(axis=1)
    rows.append(("bf16 vs fp32 image cosine (min)", f"{cos.min():.5f}", "", "must be >= 0.999"))

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    widths = [max(len(r[i]) for r in [*rows, ("what", "plipbot", "transformers", "ratio")]) for i in range(4)]
    header = ("what", "plipbot", "transformers", "ratio")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
