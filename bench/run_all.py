"""Regenerate BENCHMARKS.md: every benchmark's table, on this machine, with the command that made it.

Each benchmark is a script under bench/ run as a subprocess with `--markdown`; whatever it prints
(a line naming the setup and a markdown table with its baseline and ratio) is pasted under its own
heading together with the exact command. Adding a benchmark is one line in `BENCHES`. A script that
fails or runs past its time limit gets a section saying so (with the end of its output), and the
others still run.

    .venv/bin/python bench/run_all.py [--only model,startup] [--out BENCHMARKS.md] [--list]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    """One benchmark script: a short name, the issue goal(s) it measures, its file and quick arguments."""

    name: str
    title: str
    script: str
    args: tuple[str, ...] = ()
    timeout_s: float = 900.0
    markdown_flag: str = "--markdown"
    requires: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("cuda",): skipped without

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, self.script, *self.args, self.markdown_flag]

    def command(self) -> str:
        """The command as a reader would type it from the repository root."""
        return shlex.join([".venv/bin/python", self.script, *self.args, self.markdown_flag])


# One line per benchmark; defaults are sized so the whole run takes a few minutes on 2 cores.
BENCHES: tuple[Bench, ...] = (
    Bench("model", "Image embedding on CPU and precision `auto` (goals 1, 2)", "bench/model_bench.py"),
    Bench(
        "model-avx2",
        "The same on an AVX2-only CPU (oneDNN/MKL/ATen capped at AVX2 on this machine; goals 1, 2)",
        "bench/model_bench.py",
        ("--emulate-avx2", "--no-int8"),
    ),
    Bench("startup", "Warm start and one-image classify (goals 5, 7)", "bench/startup_bench.py"),
    Bench("bot", "Mention to reply (goal 3)", "bench/bot_bench.py"),
    Bench("render", "Reply rendering (goal 3)", "bench/render_bench.py"),
    # OpenPath's size (--full): ~7 min on 2 idle cores, most of it building the index once.
    Bench("store", "Search at 208k cases (goal 4)", "bench/store_bench.py", ("--full",), timeout_s=2400.0),
    Bench("worker", "Queue overhead (goal 6)", "bench/worker_bench.py"),
    Bench("gpu", "GPU throughput (goal 8)", "bench/gpu_bench.py", requires=("cuda",)),
)


@dataclass(frozen=True)
class Outcome:
    """What one benchmark run produced."""

    bench: Bench
    status: str  # "ok", "failed", "timed out", "skipped", "missing"
    output: str
    seconds: float


def cuda_available(python: str = sys.executable) -> bool:
    done = subprocess.run(
        [python, "-c", "import torch; print(torch.cuda.is_available())"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() == "True"


def run_bench(bench: Bench, *, python: str = sys.executable, cuda: bool | None = None) -> Outcome:
    """Run one benchmark script and keep its stdout (its markdown), or say why there is none."""
    if not (ROOT / bench.script).exists():
        return Outcome(bench, "missing", f"{bench.script} does not exist yet.", 0.0)
    if "cuda" in bench.requires and not (cuda if cuda is not None else cuda_available(python)):
        return Outcome(bench, "skipped", "No CUDA GPU on this machine: not run here.", 0.0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("PLIPBOT_")}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            bench.argv(python), cwd=ROOT, env=env, capture_output=True, text=True, timeout=bench.timeout_s
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout or ""
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        limit = f"no result within {bench.timeout_s:.0f} s\n"
        return Outcome(bench, "timed out", limit + text[-2000:], time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return Outcome(bench, "failed", (done.stdout + done.stderr)[-3000:], seconds)
    return Outcome(bench, "ok", done.stdout.strip(), seconds)


def machine_description() -> list[str]:
    """CPU model and flags, cores, memory, GPU, versions: the lines under the report's title."""
    try:
        sys.path.insert(0, str(ROOT))
        from model.precision import detect_cpu

        cpu = detect_cpu()
        cpu_line = f"{cpu.model}; flags: {cpu.isa_summary}; torch CPU capability {cpu.torch_capability}"
    except Exception as err:  # the report must still be written
        cpu_line = f"{platform.processor() or platform.machine()} (flags unknown: {type(err).__name__})"
    gpu = "none"
    if shutil.which("nvidia-smi"):
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        gpu = "; ".join(line.strip() for line in done.stdout.splitlines() if line.strip()) or "none"
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem = f"{memory:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        mem = "unknown"
    versions = []
    for module in ("torch", "open_clip", "transformers"):
        try:
            from importlib.metadata import version

            versions.append(f"{module} {version(module if module != 'open_clip' else 'open_clip_torch')}")
        except Exception:
            continue
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return [
        f"- CPU: {cpu_line}",
        f"- cores: {os.cpu_count()}, memory: {mem}, GPU: {gpu}",
        f"- Python {platform.python_version()}, {', '.join(versions)}; commit {commit or 'unknown'}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def render_report(machine: Sequence[str], outcomes: Sequence[Outcome], command: str) -> str:
    """The whole BENCHMARKS.md text."""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}`; do not edit by hand. Every ratio compares with a baseline measured in",
        "the same run (the same process where the script says so) on this machine:",
        "",
        *machine,
        "",
        "Model weights cannot be downloaded here: the PLIP-shaped rows use random weights with PLIP's exact",
        "shape (ViT-B/32, 512-d). Speed does not depend on the values; nothing here is PLIP's accuracy.",
        "",
    ]
    for outcome in outcomes:
        bench = outcome.bench
        lines += [f"## {bench.title}", ""]
        if outcome.status == "ok":
            lines += [f"Command: `{bench.command()}` ({outcome.seconds:.0f} s)", "", outcome.output, ""]
            continue
        text = outcome.output.strip().splitlines() or [""]
        lines += [f"Command: `{bench.command()}`", "", f"**{outcome.status}**: {text[0]}"]
        if text[1:]:
            lines += ["", "```", *text[1:][-30:], "```"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated bench names (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their commands")
    args = parser.parse_args(argv)
    known = {b.name: b for b in BENCHES}
    selected = list(BENCHES)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"unknown bench {', '.join(unknown)}; known: {', '.join(known)}")
        selected = [known[n] for n in names]
    if args.list:
        for bench in selected:
            print(f"{bench.name:12s} {bench.command()}")
        return 0
    cuda = cuda_available()
    outcomes = []
    for bench in selected:
        print(f"running {bench.name}: {bench.command()}", file=sys.stderr, flush=True)
        outcome = run_bench(bench, cuda=cuda)
        print(f"  {outcome.status} in {outcome.seconds:.0f} s", file=sys.stderr, flush=True)
        outcomes.append(outcome)
    given = list(argv) if argv is not None else sys.argv[1:]
    command = shlex.join([".venv/bin/python", "bench/run_all.py", *given])
    args.out.write_text(render_report(machine_description(), outcomes, command), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(o.status in ("ok", "skipped", "missing") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
