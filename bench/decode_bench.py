"""Peak memory of decoding each file of the hostile set, each in a fresh process.

    .venv/bin/python bench/decode_bench.py                      # this checkout's decoder
    .venv/bin/python bench/decode_bench.py --baseline-rev a7c87ab   # and an older one beside it

For every file of `tests/hostile_files.py` (decompression bombs, huge dimensions in tiny files,
16-bit and float TIFFs at the caps, CMYK JPEG with an ICC profile, a 1000-frame GIF, truncated
files, non-images and disguised SVG/HTML) it prints what the decoder did, how much the process's
peak RSS (VmHWM) grew, and how long the decode took, with the default `ImageLimits`. With
`--baseline-rev`, that revision's `model/images.py` decodes the same bytes in the same run, so the
table shows before and after side by side, and a second table times everyday uploads (phone
photos, screenshots, a 16-bit TIFF) with both decoders in this process. Exit status 1 when an
accepted file grew the process by more than `--max-growth-mib` (300 by default, as documented).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_name  # noqa: E402
from model.images import ImageLimits  # noqa: E402
from tests import imagegen  # noqa: E402
from tests.hostile_files import DecodeMeasurement, hostile_files, measure_decode  # noqa: E402


def _baseline_root(revision: str, workdir: Path) -> str:
    """A folder whose `model/images.py` is `revision`'s, for `measure_decode(decoder_root=...)`."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:model/images.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    package = workdir / "baseline" / "model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "images.py").write_text(source)
    return str(package.parent)


def _mib(measurement: DecodeMeasurement) -> str:
    return f"{measurement.growth_bytes / 2**20:8.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--baseline-rev", help="git revision whose decoder runs beside this one")
    parser.add_argument("--max-growth-mib", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="leave out the files slow to generate")
    parser.add_argument("--repeats", type=int, default=20, help="runs per everyday upload (timing table)")
    args = parser.parse_args()

    limits = ImageLimits()
    print(f"Decode peak memory, one fresh process per file. CPU: {cpu_name()}")
    print(
        f"Limits: {limits.max_pixels / 1e6:g} MP, {limits.max_bytes / 2**20:g} MiB files, "
        f"decode budget {limits.max_decode_bytes / 2**20:g} MiB, "
        f"output <= {limits.max_output_pixels / 1e6:g} MP, "
        f"{limits.max_concurrent_decodes} decodes at once\n"
    )
    header = f"| {'file':30} | {'size KiB':>9} | {'outcome':44} | {'peak MiB':>8} | {'ms':>6} |"
    rule = "|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|"
    if args.baseline_rev:
        header += f" {'baseline MiB':>12} | {'baseline ms':>11} | baseline outcome |"
        rule += "-" * 14 + "|" + "-" * 13 + "|" + "-" * 18 + "|"
    print(header)
    print(rule)
    worst = 0
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        baseline = _baseline_root(args.baseline_rev, Path(tmp)) if args.baseline_rev else None
        for hostile in hostile_files(limits, include_slow=not args.quick):
            now = measure_decode(hostile.data, limits, tmp)
            outcome = now.outcome if len(now.outcome) <= 44 else now.outcome[:43] + "…"
            row = (
                f"| {hostile.name:30} | {len(hostile.data) / 1024:9.1f} | {outcome:44} | {_mib(now)} "
                f"| {now.seconds * 1000:6.0f} |"
            )
            if baseline:
                old = measure_decode(hostile.data, limits, tmp, decoder_root=baseline)
                old_outcome = "decoded" if old.decoded else "refused"
                row += f" {_mib(old):>12} | {old.seconds * 1000:11.0f} | {old_outcome:16} |"
            print(row, flush=True)
            if now.decoded != hostile.accepted:
                failures.append(f"{hostile.name}: expected {'decoded' if hostile.accepted else 'refused'}")
            if now.decoded:
                worst = max(worst, now.growth_bytes)
                if now.growth_bytes > args.max_growth_mib * 2**20:
                    failures.append(f"{hostile.name}: grew {now.growth_bytes / 2**20:.0f} MiB")
        print(
            f"\nLargest growth for an accepted file: {worst / 2**20:.1f} MiB "
            f"(promise: < {args.max_growth_mib:g})"
        )
        if baseline:
            _time_typical_uploads(baseline, args.repeats)
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


def _typical_uploads() -> list[tuple[str, bytes]]:
    """What people actually post: phone photos, screenshots, a scanner's 16-bit TIFF."""
    photo = imagegen.texture((1600, 1200), seed=1)
    sixteen_bit = np.asarray(photo.resize((2048, 2048)).convert("L"), np.uint16) * 257
    return [
        ("JPEG photo 1600x1200", imagegen.encode(photo, "JPEG", quality=90)),
        ("JPEG photo 4000x3000", imagegen.encode(photo.resize((4000, 3000)), "JPEG", quality=90)),
        ("PNG screenshot RGB 1920x1080", imagegen.encode(photo.resize((1920, 1080)), "PNG")),
        ("PNG RGBA 1920x1080", imagegen.encode(photo.resize((1920, 1080)).convert("RGBA"), "PNG")),
        ("TIFF 16-bit gray 2048x2048", imagegen.encode(Image.fromarray(sixteen_bit), "TIFF")),
    ]


def _time_typical_uploads(baseline_root: str, repeats: int) -> None:
    """Decode time of everyday uploads, this decoder against the baseline's, in this process."""
    import importlib.util

    from model.images import decode_image

    source = Path(baseline_root) / "model" / "images.py"
    spec = importlib.util.spec_from_file_location("baseline_images", source)
    assert spec is not None and spec.loader is not None
    baseline = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = baseline  # dataclasses look their module up while the class is built
    spec.loader.exec_module(baseline)
    print(f"\nDecode time of everyday uploads, {repeats} interleaved runs, in process (ms)\n")
    print("| upload | baseline p50 / p95 | now p50 / p95 | ratio (p50) |")
    print("|---|---|---|---|")
    for name, data in _typical_uploads():
        old_ms: list[float] = []
        new_ms: list[float] = []
        baseline.decode_image(data), decode_image(data)
        for _ in range(repeats):
            for decode, samples in ((baseline.decode_image, old_ms), (decode_image, new_ms)):
                start = time.perf_counter()
                decode(data)
                samples.append((time.perf_counter() - start) * 1000)
        (old_p50, old_p95), (new_p50, new_p95) = _p50_p95(old_ms), _p50_p95(new_ms)
        print(
            f"| {name} | {old_p50:.1f} / {old_p95:.1f} | {new_p50:.1f} / {new_p95:.1f} "
            f"| {old_p50 / new_p50:.2f}x |"
        )


def _p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


if __name__ == "__main__":
    raise SystemExit(main())
