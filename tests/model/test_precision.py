"""Precision `auto`: the rule, the probe that keeps it from ever being slower than fp32, and accuracy.

Checkpoints here are random (NOT PLIP): they show the fast paths compute the same function as fp32,
not that any precision is good enough for PLIP's real weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import precision
from model.encoder import ClipEncoder
from model.precision import CpuInfo, _probe_key, cached_bf16_speedup, choose_precision, detect_cpu
from model.weights import resolve_weights
from plipbot.errors import PlipbotError
from tests.imagegen import ihc, noise, texture

ROOT = Path(__file__).resolve().parents[2]
AVX2_ONLY = CpuInfo("Test AVX2 CPU", frozenset({"avx2", "fma"}), "AVX2")
NATIVE_BF16 = CpuInfo("Test bf16 CPU", frozenset({"avx2", "avx512f", "avx512_bf16"}), "AVX512")


@pytest.fixture(autouse=True)
def _fresh_probe_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "_probed", {})


def _seed_probe(cache_dir: Path, cpu: CpuInfo, speedup: float) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "precision-probe.json").write_text(json.dumps({_probe_key(cpu): speedup}))


def test_auto_is_fp32_without_native_bf16_and_never_probes(tmp_path: Path) -> None:
    choice = choose_precision("auto", "cpu", cache_dir=tmp_path, cpu=AVX2_ONLY)
    assert choice.precision == "fp32"
    assert "emulated" in choice.reason and "avx2" in choice.reason
    assert not (tmp_path / "precision-probe.json").exists()


def test_auto_picks_bf16_only_when_the_probe_says_it_is_faster(tmp_path: Path) -> None:
    _seed_probe(tmp_path, NATIVE_BF16, 2.4)
    choice = choose_precision("auto", "cpu", cache_dir=tmp_path, cpu=NATIVE_BF16)
    assert choice.precision == "bf16" and "2.4x" in choice.describe()
    precision._probed.clear()
    _seed_probe(tmp_path, NATIVE_BF16, 0.9)  # flags say native, the machine says otherwise
    slow = choose_precision("auto", "cpu", cache_dir=tmp_path, cpu=NATIVE_BF16)
    assert slow.precision == "fp32" and "0.90x" in slow.reason


def test_gpu_auto_is_fp16_and_explicit_choices_are_kept(tmp_path: Path) -> None:
    assert choose_precision("auto", "cuda").precision == "fp16"
    for name in ("fp32", "bf16", "fp16"):
        assert choose_precision(name, "cpu", cpu=AVX2_ONLY).precision == name
    int8 = choose_precision("int8", "cpu", cpu=NATIVE_BF16)
    assert int8.precision == "int8" and "opt-in" in int8.reason
    with pytest.raises(PlipbotError, match="Unknown precision 'fp64'"):
        choose_precision("fp64", "cpu")


def test_probe_is_measured_once_and_cached_per_cpu(tmp_path: Path) -> None:
    cpu = detect_cpu()
    first = cached_bf16_speedup(cpu, tmp_path)
    stored = json.loads((tmp_path / "precision-probe.json").read_text())
    assert stored == {_probe_key(cpu): pytest.approx(first, abs=1e-3)}
    precision._probed.clear()
    assert cached_bf16_speedup(cpu, tmp_path) == stored[_probe_key(cpu)]  # read back, not re-measured
    other = CpuInfo("another CPU", cpu.flags, cpu.torch_capability)
    assert _probe_key(other) != _probe_key(cpu)


def test_detect_cpu_names_the_cpu() -> None:
    cpu = detect_cpu()
    assert cpu.model and cpu.torch_capability
    if Path("/proc/cpuinfo").exists() and os.uname().machine == "x86_64":
        assert "avx2" in cpu.flags or "sse2" in cpu.flags


@pytest.mark.skipif(
    not detect_cpu().native_bf16 or os.uname().machine != "x86_64", reason="needs a CPU with native bf16"
)
def test_auto_falls_back_to_fp32_when_onednn_cannot_use_native_bf16(tmp_path: Path) -> None:
    """Capping oneDNN at AVX2 reproduces an AVX2-only server on this CPU: bf16 becomes emulated and
    several times slower, and `auto` must then run fp32 even though /proc/cpuinfo lists avx512_bf16."""
    code = (
        "from pathlib import Path; from model.precision import choose_precision; "
        f"c = choose_precision('auto', 'cpu', cache_dir=Path({str(tmp_path)!r})); "
        "print(c.precision, c.reason)"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fp32 "), done.stdout


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_auto_and_int8_stay_within_cosine_0999_of_fp32(tiny_checkpoint: Path, tmp_path: Path) -> None:
    weights = resolve_weights(str(tiny_checkpoint), tmp_path / "models")
    reference = ClipEncoder.from_weights(weights, device="cpu", precision="fp32", fast_path=False)
    images = [ihc(), noise((300, 240), seed=4), texture(seed=9)]
    expected = reference.encode_images(images)
    for name in ("auto", "fp32", "bf16", "int8"):
        encoder = ClipEncoder.from_weights(weights, device="cpu", precision=name, cache_dir=tmp_path)
        assert encoder.image_path == "fast"
        got = encoder.encode_images(images)
        assert got.dtype == np.float32
        assert _cosines(got, expected).min() >= 0.999, name
        if encoder.precision == "fp32":
            np.testing.assert_allclose(got, expected, atol=1e-5)
    auto = ClipEncoder.from_weights(weights, device="cpu", precision="auto", cache_dir=tmp_path)
    assert auto.info.precision == auto.precision and auto.info.precision_reason.startswith(auto.precision)


@pytest.mark.slow
def test_auto_on_plip_shaped_model_is_within_cosine_0999(vit_b32_checkpoint: Path, tmp_path: Path) -> None:
    """PLIP's shape (random weights): whatever `auto` picks on this machine agrees with fp32."""
    weights = resolve_weights(str(vit_b32_checkpoint), tmp_path / "models")
    reference = ClipEncoder.from_weights(weights, device="cpu", precision="fp32", fast_path=False)
    auto = ClipEncoder.from_weights(weights, device="cpu", precision="auto", cache_dir=tmp_path)
    images = [ihc(), noise((300, 240), seed=4), texture(seed=9), ihc().rotate(90)]
    assert _cosines(auto.encode_images(images), reference.encode_images(images)).min() >= 0.999
    texts = ["An H&E image patch of debris.", "An H&E image of malignant tissue."]
    assert _cosines(auto.encode_texts(texts), reference.encode_texts(texts)).min() >= 0.999


def test_fast_tower_covers_gelu_models_and_int8_needs_it(tmp_path: Path) -> None:
    from tests.checkpoints import TINY, make_hf_clip

    directory = tmp_path / "gelu"
    make_hf_clip(directory, TINY, seed=3, hidden_act="gelu")
    weights = resolve_weights(str(directory), tmp_path / "models")
    fast = ClipEncoder.from_weights(weights, device="cpu", precision="fp32")
    slow = ClipEncoder.from_weights(weights, device="cpu", precision="fp32", fast_path=False)
    assert (fast.image_path, slow.image_path) == ("fast", "open_clip")
    images = [ihc(), texture(seed=2)]
    np.testing.assert_allclose(fast.encode_images(images), slow.encode_images(images), atol=1e-5)
    with pytest.raises(PlipbotError, match="fast image tower"):
        ClipEncoder.from_weights(weights, device="cpu", precision="int8", fast_path=False)
