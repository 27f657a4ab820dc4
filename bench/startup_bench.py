"""Start-up costs: the first answer after a warm start, and a one-image `plipbot classify`.

1. Warm start (issue goal 5): a Container in embedded mode does what `plipbot run` does before it
   connects (`EmbeddedWorker.warm_up`), then answers one image through the real `plipbot.answer` task
   (decode, embed, suggest, search); that first answer is compared with the steady-state p50 of the
   next ones, in the same process. The same is measured without the warm-up, as `plipbot run` behaved
   before (the model loaded on the first mention).
2. `plipbot classify` (goal 7): the whole process, `python -m plipbot.cli classify IMAGE`, with the
   weights converted and the label embeddings cached (a second run), compared with `import torch`
   alone, the floor of any command that runs the model; and which heavy packages it imported.

Random weights with PLIP's shape (ViT-B/32), NOT PLIP; `--tiny` uses the tiny test model.

    .venv/bin/python bench/startup_bench.py [--answers 15] [--runs 3] [--tiny] [--markdown]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import render_table  # noqa: E402

HEAVY = (
    "transformers", "torchvision", "matplotlib", "sqlalchemy", "celery", "qdrant_client", "discord", "timm"
)
_PROBE = """
import runpy, sys
sys.argv = ["plipbot", *sys.argv[1:]]
try:
    runpy.run_module("plipbot.cli", run_name="__main__")
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def _image_bytes(seed: int) -> bytes:
    from tests.imagegen import ihc

    buffer = io.BytesIO()
    ihc().rotate(90 * (seed % 4)).resize((640 + seed, 480 + seed)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def answers(checkpoint: Path, data_dir: Path, n: int, *, warm: bool) -> tuple[float, float, float]:
    """(warm-up seconds, first answer ms, p50 of the next `n` answers ms) in a fresh Container."""
    from plipbot.composition import Container
    from plipbot.settings import Settings
    from workers.case_contracts import AnswerRequest

    container = Container(Settings(data_dir=data_dir, model={"name": str(checkpoint), "device": "cpu"}))
    client = container.task_client
    try:
        warm_s = 0.0
        if warm:
            warm_s = client.transport.warm_up()  # type: ignore[attr-defined]
        times = []
        for i in range(n + 1):
            request = AnswerRequest(image=client.upload(_image_bytes(i)), guild_id=1, k=3)
            start = time.perf_counter()
            result = client.answer(request, timeout_s=300)
            times.append((time.perf_counter() - start) * 1000)
            assert result.kind == "answer", result
        return warm_s, times[0], statistics.median(times[1:])
    finally:
        container.close()


def timed_process(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stderr) of one subprocess run."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed: {done.stderr[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=15, help="answers after the first (steady state)")
    parser.add_argument("--runs", type=int, default=3, help="classify runs (median)")
    parser.add_argument("--tiny", action="store_true", help="tiny random model instead of PLIP's shape")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from tests.checkpoints import TINY, VIT_B_32, make_hf_clip

    tmp = Path(tempfile.mkdtemp(prefix="plipbot-startup-bench-"))
    checkpoint = tmp / ("tiny-random" if args.tiny else "random-vit-b-32")
    make_hf_clip(checkpoint, TINY if args.tiny else VIT_B_32, seed=0, content_dominant=True)

    rows: list[list[str]] = []
    # Warm start: the first run converts the checkpoint and caches label embeddings, like a first install.
    warm_s, first_warm, p50_warm = answers(checkpoint, tmp / "data", args.answers, warm=True)
    _, first_cold, p50_cold = answers(checkpoint, tmp / "data", args.answers, warm=False)
    rows.append(
        [
            "first answer after ready, warm start (`plipbot run` / `plipbot worker` now)",
            f"{first_warm:.0f} ms (warm-up {warm_s:.1f} s before ready)",
            f"steady p50 {p50_warm:.0f} ms",
            f"**{first_warm / p50_warm:.2f}x** (goal <= 2x)",
        ]
    )
    rows.append(
        [
            "first answer, model loaded on first use (before; torch already imported here)",
            f"{first_cold:.0f} ms",
            f"steady p50 {p50_cold:.0f} ms",
            f"{first_cold / p50_cold:.1f}x",
        ]
    )

    image = tmp / "tile.jpg"
    image.write_bytes(_image_bytes(0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLIPBOT_")}
    env |= {"PLIPBOT_DATA_DIR": str(tmp / "data"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    probe = _PROBE.format(heavy=HEAVY)
    classify = [sys.executable, "-c", probe, "classify", "--model", str(checkpoint), str(image)]
    timed_process(classify, env)  # fills the caches a second run finds (conversion, labels, probe)
    runs = [timed_process(classify, env) for _ in range(args.runs)]
    floor = [timed_process([sys.executable, "-c", "import torch"], env) for _ in range(args.runs)]
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    floor_wall = statistics.median(r[0] for r in floor)
    floor_cpu = statistics.median(r[1] for r in floor)
    heavy = runs[-1][2].rsplit("HEAVY:", 1)[-1].strip() or "none"
    rows.append(
        [
            "one-image `plipbot classify`, whole process (caches warm)",
            f"{wall:.2f} s wall, {cpu:.2f} s CPU",
            f"`import torch` alone: {floor_wall:.2f} s wall, {floor_cpu:.2f} s CPU",
            f"**{wall:.2f} s** (goal <= 4 s); {wall / floor_wall:.1f}x the floor",
        ]
    )
    rows.append(["heavy packages imported by classify", heavy, f"checked: {', '.join(HEAVY)}", ""])

    from model.precision import detect_cpu

    cpu_info = detect_cpu()
    shape = "tiny random CLIP" if args.tiny else "random ViT-B/32 (PLIP's shape, not PLIP)"
    cores = os.cpu_count()
    print(f"CPU {cpu_info.model} ({cpu_info.isa_summary}), {cores} cores; model: {shape}; embedded mode.")
    print()
    print(render_table(["what", "plipbot", "baseline", "ratio"], rows, args.markdown, align="left"))


if __name__ == "__main__":
    main()
