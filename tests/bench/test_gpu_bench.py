"""bench/gpu_bench.py runs end to end on CPU with a tiny model (no GPU here): correctness, not speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_runs_on_cpu_and_its_paths_agree() -> None:
    argv = [sys.executable, "bench/gpu_bench.py", "--device", "cpu", "--tiny", "--images", "6"]
    argv += ["--batch", "4"]
    done = subprocess.run([*argv, "--markdown"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    text = "\n".join(rows)
    assert "forward only, batch 4, fp32 (baseline)" in text
    assert "forward only, batch 4, bf16" in text
    assert "CPU decode" in text and "img/s" in text
    cells = [row.strip("| ").split(" | ") for row in rows if row.startswith("| cosine")]
    cosines = {cell[0]: float(cell[1]) for cell in cells}
    assert cosines, done.stdout
    assert cosines["cosine, bf16 vs fp32 (min)"] >= 0.999
    for name, value in cosines.items():
        assert value >= 0.99, (name, value)  # device preprocessing is close to, not equal to, Pillow's
