"""Which numeric precision the encoder runs in, and why: `auto` picks the fastest path that is safe.

The rule for `auto`:

- CUDA: fp16 (tensor cores on every GPU torch supports; within cosine 0.999 of fp32 on ViT-B/32).
- CPU: bf16 only when the CPU computes it natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo, and
  oneDNN agrees) *and* a short one-time probe shows bf16 matrix products really are faster than fp32
  on this machine; otherwise fp32. On CPUs without native bf16 (AVX2-only servers and laptops), bf16 is
  emulated and several times slower than fp32, which is why the flags alone are not trusted to say
  "faster": oneDNN can be capped below the hardware (ONEDNN_MAX_CPU_ISA) and a VM can hide features.
  The probe takes a fraction of a second and its result is cached per CPU model, flags, torch version
  and oneDNN cap, so a restart does not repeat it.
- int8 (dynamic quantization of the vision tower's linear layers) is never chosen by `auto`: random
  test weights cannot prove it exact enough for real ones, so it is opt-in and logged as a warning.

Every choice comes with a one-line reason, which the encoder logs and `plipbot doctor` prints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: What `--precision` and PLIPBOT_MODEL__PRECISION accept.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

#: bf16 must beat fp32 by this factor in the probe before `auto` picks it (noise margin).
BF16_MIN_SPEEDUP = 1.2

PROBE_VERSION = 1

_probed: dict[str, float] = {}  # this process's probe answers, by `_probe_key`


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as the precision choice sees it: its name and the instruction-set flags that matter."""

    model: str
    flags: frozenset[str]
    torch_capability: str

    @property
    def native_bf16(self) -> bool:
        """bf16 dot products in hardware (AVX512-BF16 on Zen 4 / Cooper Lake+, AMX on Sapphire Rapids+)."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def isa_summary(self) -> str:
        """The flags worth printing, strongest first (e.g. `avx512_bf16 avx512f avx2`)."""
        order = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")
        shown = [f for f in order if f in self.flags]
        return " ".join(shown) or "no AVX2"


def proc_cpuinfo() -> tuple[str, frozenset[str]] | None:
    """The CPU model and flags from /proc/cpuinfo (None without it); imports nothing heavy, so bench
    scripts name their CPU with it too."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model or platform.processor() or "unknown CPU", flags


def detect_cpu() -> CpuInfo:
    """Read the CPU model and flags (Linux: /proc/cpuinfo; elsewhere torch's own detection)."""
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    found = proc_cpuinfo()
    if found is not None and found[1]:
        model, flags = found
    else:  # macOS, Windows, or a sandbox without /proc: ask torch (private helpers, so guarded)
        model = platform.processor() or platform.machine() or "unknown CPU"
        checks = {
            "avx2": "_is_avx2_supported",
            "avx512f": "_is_avx512_supported",
            "avx512_bf16": "_is_avx512_bf16_supported",
            "amx_tile": "_is_amx_tile_supported",
        }
        flags = frozenset(
            flag for flag, fn in checks.items() if getattr(torch.cpu, fn, lambda: False)()
        )
        if "amx_tile" in flags:
            flags |= {"amx_bf16"}
    return CpuInfo(model=model, flags=frozenset(flags), torch_capability=capability)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision the encoder will run in, what was asked for, and why."""

    requested: str
    precision: str
    reason: str

    def describe(self) -> str:
        """`bf16 (auto: ...)` or `fp32 (requested)`, for logs and `plipbot doctor`."""
        if self.requested == "auto":
            return f"{self.precision} (auto: {self.reason})"
        return f"{self.precision} ({self.reason})"


def _probe_key(cpu: CpuInfo) -> str:
    import torch

    material = json.dumps(
        [
            PROBE_VERSION,
            cpu.model,
            sorted(cpu.flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16"}),
            torch.__version__,
            os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
            os.environ.get("DNNL_MAX_CPU_ISA", ""),
            os.environ.get("ATEN_CPU_CAPABILITY", ""),
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def probe_bf16_speedup(rounds: int = 5) -> float:
    """fp32 time / bf16 time for a ViT-B-sized linear layer (1600 x 768 -> 3072), best of `rounds`.

    Interleaved so both precisions see the same background load; about 0.1-0.5 s in all.
    """
    import torch

    torch.manual_seed(0)
    x32 = torch.randn(1600, 768)
    w32 = torch.randn(3072, 768) * 0.02
    x16, w16 = x32.bfloat16(), w32.bfloat16()
    best = {"fp32": float("inf"), "bf16": float("inf")}
    with torch.inference_mode():
        for round_ in range(rounds + 1):  # round 0 warms oneDNN's kernels up and is not counted
            for name, (x, w) in (("fp32", (x32, w32)), ("bf16", (x16, w16))):
                start = time.perf_counter()
                torch.nn.functional.linear(x, w)
                elapsed = time.perf_counter() - start
                if round_ > 0:
                    best[name] = min(best[name], elapsed)
    return best["fp32"] / best["bf16"]


def cached_bf16_speedup(cpu: CpuInfo, cache_dir: Path | None) -> float:
    """The probe's answer for this CPU, from `cache_dir/precision-probe.json` or measured now."""
    key = _probe_key(cpu)
    if key in _probed:
        return _probed[key]
    path = cache_dir / "precision-probe.json" if cache_dir is not None else None
    cached: dict[str, float] = {}
    if path is not None and path.exists():
        try:
            loaded = json.loads(path.read_text())
            cached = {k: float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            cached = {}
    if key in cached:
        _probed[key] = cached[key]
        return cached[key]
    speedup = probe_bf16_speedup()
    _probed[key] = speedup
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**cached, key: round(speedup, 3)}))
            tmp.replace(path)
        except OSError:
            log.debug("could not cache the precision probe in %s", path, exc_info=True)
    return speedup


def choose_precision(
    requested: str,
    device_type: str,
    *,
    cache_dir: Path | None = None,
    cpu: CpuInfo | None = None,
) -> PrecisionChoice:
    """Resolve `requested` (one of PRECISIONS) for a device type (`cpu` or `cuda`).

    Explicit values are honoured as given (the encoder still refuses fp16 on CPU); `auto` follows the
    rule in this module's docstring.
    """
    from plipbot.errors import PlipbotError

    if requested not in PRECISIONS:
        raise PlipbotError(f"Unknown precision '{requested}': use {', '.join(PRECISIONS)}.")
    if requested == "int8":
        return PrecisionChoice(
            requested, "int8", "requested; opt-in, not yet proven exact enough on real weights"
        )
    if requested != "auto":
        return PrecisionChoice(requested, requested, "requested")
    if device_type == "cuda":
        return PrecisionChoice(requested, "fp16", "CUDA GPU: fp16 tensor cores")
    cpu = cpu or detect_cpu()
    if not cpu.native_bf16:
        return PrecisionChoice(
            requested, "fp32", f"no native bf16 on this CPU ({cpu.isa_summary}); bf16 would be emulated"
        )
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return PrecisionChoice(requested, "fp32", "oneDNN in this torch build has no bf16 kernels")
    speedup = cached_bf16_speedup(cpu, cache_dir)
    if speedup < BF16_MIN_SPEEDUP:
        return PrecisionChoice(
            requested,
            "fp32",
            f"native bf16 ({cpu.isa_summary}) measured only {speedup:.2f}x fp32 here",
        )
    return PrecisionChoice(
        requested, "bf16", f"native bf16 ({cpu.isa_summary}), measured {speedup:.1f}x fp32"
    )
