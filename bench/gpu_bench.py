"""GPU throughput: ViT-B/32 images per second at fp16/bf16, JPEG decode included (issue goal 8).

Three numbers per precision, on one device:
- forward only: preprocessed batches already on the device;
- CPU decode: Pillow decode + plipbot's exact preprocessing on a thread pool, overlapped with the
  forward pass of the previous batch (what the worker does);
- GPU decode: `torchvision.io.decode_jpeg(device="cuda")` (nvJPEG, batched), then resize, crop and
  normalise on the device. Not pixel-exact to PLIP's Pillow preprocessing: the cosine to the exact
  path is reported next to it.
The baseline is the fp32 forward pass on the same device, in the same process. Goal: >= 5,000
images/s on one H200 with decode included. Random weights (PLIP's shape with the default, a tiny
CLIP with `--tiny`), NOT PLIP.

    .venv/bin/python bench/gpu_bench.py [--images 4096] [--batch 256] [--markdown]
    .venv/bin/python bench/gpu_bench.py --device cpu --tiny --images 8 --batch 4   # correctness on CPU
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import render_table
from model.fast_vision import FastVisionTower
from model.open_clip_lite import CLIP
from model.preprocess import preprocess_batch
from model.registry import PreprocessSpec

VIT_B_32 = {
    "embed_dim": 512,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}
TINY = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def jpegs(n: int, seed: int = 0) -> list[bytes]:
    """n distinct 512x384 JPEGs (quality 90) with tissue-like texture, made without extra packages."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        tile = np.roll(base, (i * 7) % 96, axis=0) // 2 + np.array([120, 40, 90], dtype=np.uint8)
        image = Image.fromarray(tile.astype(np.uint8)).resize((512, 384), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def normalised(x: torch.Tensor) -> np.ndarray:
    return F.normalize(x.float(), dim=-1).cpu().numpy()


def cpu_decode_batches(
    data: list[bytes], batch: int, spec: PreprocessSpec, pool: ThreadPoolExecutor, workers: int
) -> Iterator[torch.Tensor]:
    """CPU batches, decoded and preprocessed exactly (Pillow) on `pool`, one batch ahead of the consumer."""

    def work(chunk: list[bytes]) -> torch.Tensor:
        pixels = preprocess_batch([Image.open(io.BytesIO(b)).convert("RGB") for b in chunk], spec)
        return pixels.pin_memory() if torch.cuda.is_available() else pixels

    def submit(chunk: list[bytes]) -> list[Future[torch.Tensor]]:
        step = max(1, -(-len(chunk) // workers))
        return [pool.submit(work, chunk[i : i + step]) for i in range(0, len(chunk), step)]

    chunks = [data[i : i + batch] for i in range(0, len(data), batch)]
    pending = submit(chunks[0])
    for k in range(len(chunks)):
        upcoming = submit(chunks[k + 1]) if k + 1 < len(chunks) else []
        yield torch.cat([f.result() for f in pending])
        pending = upcoming


def gpu_decode(data: list[bytes], device: torch.device, spec: PreprocessSpec) -> torch.Tensor:
    """nvJPEG decode (CPU decode when the device is a CPU), shortest-side bicubic resize, centre crop,
    normalise: all on `device`. Close to, not equal to, Pillow's resize."""
    from torchvision.io import ImageReadMode, decode_jpeg

    raw = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in data]
    decoded = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
    mean = torch.tensor(spec.mean, device=device).view(3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(3, 1, 1)
    out = torch.empty((len(decoded), 3, spec.size, spec.size), device=device)
    for i, image in enumerate(decoded):
        h, w = image.shape[-2:]
        scale = spec.size / min(h, w)
        nh, nw = max(spec.size, int(h * scale)), max(spec.size, int(w * scale))
        resized = F.interpolate(image[None].float(), size=(nh, nw), mode="bicubic", antialias=True)[0]
        top, left = (nh - spec.size) // 2, (nw - spec.size) // 2
        crop = resized[:, top : top + spec.size, left : left + spec.size].clamp(0, 255).round() / 255
        out[i] = (crop - mean) / std
    return out


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time of `repeats` runs (after one warm-up), synchronised with the device."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--precisions", help="comma list (default fp16,bf16 on GPU; bf16 on CPU)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="CPU decode threads")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a tiny random CLIP (correctness checks)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    default = "fp16,bf16" if device.type == "cuda" else "bf16"
    precisions = [p.strip() for p in (args.precisions or default).split(",") if p.strip()]
    torch.manual_seed(0)
    model = CLIP(**(TINY if args.tiny else VIT_B_32)).eval().requires_grad_(False)
    spec = PreprocessSpec()
    data = jpegs(args.images)
    n, batch = len(data), min(args.batch, len(data))
    pool = ThreadPoolExecutor(max_workers=max(1, args.workers))

    towers = {p: FastVisionTower(model.visual, dtype=DTYPES[p], device=device) for p in {"fp32", *precisions}}
    exact = preprocess_batch([Image.open(io.BytesIO(b)).convert("RGB") for b in data[:batch]], spec)
    on_device = exact.to(device)
    reference = normalised(towers["fp32"](on_device))

    rows: list[list[str]] = []
    fwd32 = timed(lambda: towers["fp32"](on_device), device, args.repeats)
    base = batch / fwd32
    rate_base = f"{base:,.0f} img/s"
    rows.append([f"forward only, batch {batch}, fp32 (baseline)", rate_base, rate_base, "1.00x"])
    cosines: list[list[str]] = []
    for name in precisions:
        tower = towers[name]
        fwd = batch / timed(lambda tower=tower: tower(on_device), device, args.repeats)
        what = f"forward only, batch {batch}, {name}"
        rows.append([what, f"{fwd:,.0f} img/s", rate_base, f"{fwd / base:.2f}x"])

        def cpu_path(tower: FastVisionTower = tower) -> None:
            for pixels in cpu_decode_batches(data, batch, spec, pool, args.workers):
                tower(pixels.to(device, non_blocking=True))

        rate = n / timed(cpu_path, device, 1)
        rows.append(
            [
                f"CPU decode ({args.workers} threads) + exact preprocessing + {name}, {n} JPEGs",
                f"{rate:,.0f} img/s",
                f"{base:,.0f} img/s",
                f"{rate / base:.2f}x",
            ]
        )

        def gpu_path(tower: FastVisionTower = tower) -> None:
            for i in range(0, n, batch):
                tower(gpu_decode(data[i : i + batch], device, spec))

        try:
            rate = n / timed(gpu_path, device, 1)
            approx = normalised(tower(gpu_decode(data[:batch], device, spec)))
            where = "nvJPEG" if device.type == "cuda" else "CPU decode_jpeg"
            what = f"{where} decode + on-device preprocessing + {name}, {n} JPEGs"
            rows.append([what, f"{rate:,.0f} img/s", f"{base:,.0f} img/s", f"{rate / base:.2f}x"])
            low = float(np.sum(approx * reference, axis=1).min())
            what = f"cosine, {name} with device preprocessing vs fp32 exact (min)"
            cosines.append([what, f"{low:.5f}", "1", ""])
        except (ImportError, RuntimeError) as err:
            rows.append([f"device decode + {name}", f"unavailable: {str(err).splitlines()[0][:80]}", "", ""])
        got = normalised(tower(on_device))
        low = float(np.sum(got * reference, axis=1).min())
        cosines.append([f"cosine, {name} vs fp32 (min)", f"{low:.5f}", "1", ">= 0.999 required"])
    pool.shutdown()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    shape = "tiny random CLIP" if args.tiny else "random ViT-B/32 (PLIP's shape, not PLIP)"
    goal = "goal >= 5,000 img/s with decode on one H200"
    print(f"device {name}; torch {torch.__version__}; model {shape}; {goal}.")
    print()
    header = ["what", "plipbot", "baseline: fp32 forward", "ratio"]
    print(render_table(header, rows + cosines, args.markdown, align="left"))


if __name__ == "__main__":
    main()
