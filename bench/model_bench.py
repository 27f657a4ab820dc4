"""Image embedding on CPU, JPEG bytes to embeddings, against PLIP's own pipeline in the same process.

The baseline is what PLIP's authors run: transformers `CLIPProcessor` + `CLIPModel` (fp32, SDPA
attention), batch 32, with the JPEG decode (Pillow) and preprocessing included. plipbot runs its
production path: `model.images.decode_image` (bounded decode) then `ClipEncoder.encode_images` at
each precision. Rounds are interleaved and the fastest round of each counts, so both see the same
background load. Weights are random with PLIP's exact shape (ViT-B/32, 512-d): speed does not depend
on the values, and these are NOT PLIP (cosines below show the paths compute the same function).

    .venv/bin/python bench/model_bench.py [--images 32] [--rounds 3] [--markdown] [--emulate-avx2]

`--emulate-avx2` caps oneDNN, MKL and ATen at AVX2 (re-executing with ONEDNN_MAX_CPU_ISA=AVX2,
MKL_ENABLE_INSTRUCTIONS=AVX2, ATEN_CPU_CAPABILITY=avx2): the machine kind without native bf16, where
bf16 is emulated; `auto` must then fall back to fp32.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import render_table  # noqa: E402


def _reexec_capped() -> None:
    if all(os.environ.get(k) == v for k, v in AVX2_ENV.items()):
        return
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})


def jpeg_corpus(n: int) -> list[bytes]:
    """n JPEGs (quality 90) of a real IHC micrograph at upload-like sizes: 512x512, 800x600, 1024x768."""
    from tests.imagegen import ihc

    base = ihc()
    sizes = [(512, 512), (800, 600), (1024, 768)]
    out = []
    for i in range(n):
        image = base.rotate(90 * (i % 4)).resize(sizes[i % len(sizes)])
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images per round (default one batch of 32)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the fastest counts")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-int8", action="store_true", help="skip the opt-in int8 row")
    parser.add_argument("--emulate-avx2", action="store_true", help="cap oneDNN/MKL/ATen at AVX2")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.emulate_avx2:
        _reexec_capped()

    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from model.encoder import ClipEncoder
    from model.images import ImageLimits, decode_image
    from model.loading import load_clip
    from model.precision import detect_cpu
    from model.preprocess import preprocess_batch
    from model.weights import resolve_weights
    from tests.checkpoints import VIT_B_32, make_hf_clip

    tmp = Path(tempfile.mkdtemp(prefix="plipbot-model-bench-"))
    ckpt = tmp / "random-vit-b-32"
    make_hf_clip(ckpt, VIT_B_32, seed=0)
    weights = resolve_weights(str(ckpt), tmp / "models")
    jpegs = jpeg_corpus(args.images)
    limits = ImageLimits()
    n, batch = len(jpegs), args.batch

    processor = CLIPProcessor.from_pretrained(ckpt)
    pil_processor = CLIPImageProcessorPil.from_pretrained(ckpt)
    reference = CLIPModel.from_pretrained(ckpt, attn_implementation="sdpa").eval()

    def features(out: object) -> torch.Tensor:
        return out if torch.is_tensor(out) else out.pooler_output  # transformers 4 vs 5

    def ref_decode(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data)).convert("RGB")

    def ref_pixels(images: list[Image.Image]) -> torch.Tensor:
        return processor(images=images, return_tensors="pt")["pixel_values"]

    def ref_pipeline() -> np.ndarray:
        rows = []
        for i in range(0, n, batch):
            pixels = ref_pixels([ref_decode(b) for b in jpegs[i : i + batch]])
            with torch.inference_mode():
                out = features(reference.get_image_features(pixel_values=pixels))
                rows.append(torch.nn.functional.normalize(out, dim=-1))
        return torch.cat(rows).numpy()

    def encoder(precision: str) -> ClipEncoder:
        return ClipEncoder.from_weights(
            weights, device="cpu", precision=precision, batch_size=batch, cache_dir=tmp
        )

    encoders = {name: encoder(name) for name in ("auto", "fp32", *(() if args.no_int8 else ("int8",)))}
    auto = encoders["auto"]

    def ours_pipeline(encoder: ClipEncoder) -> np.ndarray:
        return encoder.encode_images([decode_image(b, limits).image for b in jpegs])

    # ---- end to end, interleaved
    pipelines: dict[str, Callable[[], np.ndarray]] = {"reference": ref_pipeline}
    pipelines |= {name: (lambda e=e: ours_pipeline(e)) for name, e in encoders.items()}
    best = {name: float("inf") for name in pipelines}
    cpu_best = {name: float("inf") for name in pipelines}  # process CPU time: steadier on a busy machine
    outputs: dict[str, np.ndarray] = {name: fn() for name, fn in pipelines.items()}  # warm-up round
    for _ in range(args.rounds):
        for name, fn in pipelines.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
            cpu_best[name] = min(cpu_best[name], time.process_time() - cpu_start)

    # ---- the parts: decode + preprocessing, forward pass
    images = [decode_image(b, limits).image for b in jpegs[:batch]]
    ref_in = ref_pixels([ref_decode(b) for b in jpegs[:batch]])
    ours_in = preprocess_batch(images, auto.preprocess)
    parts = {
        "pre_ref": lambda: ref_pixels([ref_decode(b) for b in jpegs[:batch]]),
        "pre_ours": lambda: preprocess_batch(
            [decode_image(b, limits).image for b in jpegs[:batch]], auto.preprocess
        ),
        "fwd_ref": lambda: reference.get_image_features(pixel_values=ref_in),
    } | {f"fwd_{name}": (lambda e=e: e.encode_pixels(ours_in)) for name, e in encoders.items()}
    part_best = {name: float("inf") for name in parts}
    part_cpu = {name: float("inf") for name in parts}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, fn in parts.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                fn()
                part_best[name] = min(part_best[name], time.perf_counter() - start)
                part_cpu[name] = min(part_cpu[name], time.process_time() - cpu_start)

    pil_images = [ref_decode(b) for b in jpegs[:batch]]
    pil_in = pil_processor(images=pil_images, return_tensors="pt")["pixel_values"]
    diff_pil = float((ours_in - pil_in).abs().max())
    diff_default = float((ours_in - ref_in).abs().max())
    start = time.perf_counter()
    load_clip(weights)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    CLIPModel.from_pretrained(ckpt)
    ref_load_s = time.perf_counter() - start

    # ---- table
    per = {name: t / n * 1000 for name, t in best.items()}
    cpu_per = {name: t / n * 1000 for name, t in cpu_best.items()}
    ref_ms, ref_cpu = per["reference"], cpu_per["reference"]
    cos = {name: float(np.sum(outputs[name] * outputs["reference"], axis=1).min()) for name in encoders}
    baseline = f"{ref_ms:.1f} ms wall, {ref_cpu:.1f} ms CPU"
    rows: list[list[str]] = []
    labels = {
        "auto": f"auto (= {auto.precision}: {auto.choice.reason})",
        "fp32": "fp32",
        "int8": "int8 (opt-in; unproven on real weights)",
    }
    for name in encoders:
        ratio = f"{ref_ms / per[name]:.2f}x wall, {ref_cpu / cpu_per[name]:.2f}x CPU"
        rows.append(
            [
                f"image embedding per image, batch {batch}, JPEG decode + preprocessing, {labels[name]}",
                f"{per[name]:.1f} ms wall, {cpu_per[name]:.1f} ms CPU",
                baseline,
                f"**{ratio}**" if name == "auto" else ratio,
            ]
        )
    def part(ours: str, ref: str, what: str) -> list[str]:
        wall, cpu = part_best[ours] / batch * 1000, part_cpu[ours] / batch * 1000
        ref_wall, ref_cpu = part_best[ref] / batch * 1000, part_cpu[ref] / batch * 1000
        return [
            what,
            f"{wall:.1f} ms wall, {cpu:.1f} ms CPU",
            f"{ref_wall:.1f} ms wall, {ref_cpu:.1f} ms CPU",
            f"{ref_wall / wall:.2f}x wall, {ref_cpu / cpu:.2f}x CPU",
        ]

    for name in encoders:
        tower = "fast ViT tower" if encoders[name].image_path == "fast" else "open_clip tower"
        rows.append(part(f"fwd_{name}", "fwd_ref", f"forward pass only, batch {batch}, {name} ({tower})"))
    rows.append(part("pre_ours", "pre_ref", "JPEG decode + preprocessing per image"))
    for name in encoders:
        what = f"cosine to the reference embedding (min over {n}), {name}"
        rows.append([what, f"{cos[name]:.5f}", "1", ">= 0.999 required"])
    rows.append(
        [
            "preprocessing max abs difference (normalised units)",
            f"{diff_pil:.1e} vs CLIPImageProcessorPil",
            f"{diff_default:.1e} vs CLIPProcessor default",
            "pixel-exact to PIL reference" if diff_pil < 1e-5 else "",
        ]
    )
    loads = [f"{load_s * 1000:.0f} ms", f"{ref_load_s * 1000:.0f} ms", f"{ref_load_s / load_s:.1f}x"]
    rows.append(["load weights (cached safetensors)", *loads])

    cpu = detect_cpu()
    capped = " (oneDNN/MKL/ATen capped at AVX2)" if args.emulate_avx2 else ""
    print(
        f"CPU {cpu.model} ({cpu.isa_summary}; torch capability {cpu.torch_capability}){capped}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; {n} JPEGs "
        f"(512x512 / 800x600 / 1024x768), best of {args.rounds} interleaved rounds; "
        "random ViT-B/32 weights, not PLIP."
    )
    print()
    header = ["what", "plipbot", "baseline: CLIPProcessor + CLIPModel (fp32, SDPA)", "ratio"]
    print(render_table(header, rows, args.markdown, align="left"))


if __name__ == "__main__":
    main()
