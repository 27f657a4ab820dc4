"""bench/run_all.py: each bench runs as a subprocess with --markdown and its table lands in the report."""

from __future__ import annotations

from pathlib import Path

from bench.run_all import BENCHES, Bench, machine_description, render_report, run_bench

GOOD = '''
import sys
assert sys.argv[1:] == ["--rows", "2", "--markdown"], sys.argv
print("setup line")
print()
print("| what | plipbot | baseline | ratio |")
print("|---|---|---|---|")
print("| thing | 5 ms | 10 ms | 2.00x |")
'''


def test_a_bench_script_output_is_pasted_with_its_command(tmp_path: Path) -> None:
    script = tmp_path / "good_bench.py"
    script.write_text(GOOD)
    outcome = run_bench(Bench("good", "A good bench (goal 0)", str(script), ("--rows", "2")), cuda=False)
    assert outcome.status == "ok", outcome.output
    report = render_report(["- CPU: test"], [outcome], ".venv/bin/python bench/run_all.py")
    assert "## A good bench (goal 0)" in report
    assert f"Command: `.venv/bin/python {script} --rows 2 --markdown`" in report
    assert "| thing | 5 ms | 10 ms | 2.00x |" in report
    assert report.startswith("# Benchmarks\n") and "- CPU: test" in report


def test_failures_and_skips_are_reported_and_do_not_stop_the_run(tmp_path: Path) -> None:
    broken = tmp_path / "broken_bench.py"
    broken.write_text("import sys\nprint('partial')\nsys.exit('boom: no table')\n")
    failed = run_bench(Bench("broken", "Broken", str(broken)), cuda=False)
    assert failed.status == "failed" and "boom: no table" in failed.output
    slow = tmp_path / "slow_bench.py"
    slow.write_text("import time\ntime.sleep(30)\n")
    timed_out = run_bench(Bench("slow", "Slow", str(slow), timeout_s=1.0), cuda=False)
    assert timed_out.status == "timed out"
    gpu = run_bench(Bench("gpu", "GPU", str(broken), requires=("cuda",)), cuda=False)
    assert gpu.status == "skipped"
    missing = run_bench(Bench("later", "Later", "bench/not_written_yet.py"), cuda=False)
    assert missing.status == "missing"
    report = render_report([], [failed, timed_out, gpu, missing], "cmd")
    assert "**failed**" in report and "**timed out**" in report and "**skipped**" in report
    assert "**missing**" in report


def test_every_listed_bench_is_unique_and_takes_markdown() -> None:
    names = [b.name for b in BENCHES]
    assert len(names) == len(set(names))
    for bench in BENCHES:
        assert bench.command().endswith(" --markdown") and bench.script.startswith("bench/")
        assert bench.argv("python")[1] == bench.script
    assert {"model", "startup", "gpu", "store", "worker", "bot", "render"} <= set(names)


def test_machine_description_names_cpu_gpu_and_date() -> None:
    lines = machine_description()
    text = "\n".join(lines)
    assert lines[0].startswith("- CPU: ") and "flags:" in lines[0]
    assert "GPU: " in text and "- date: " in text and "Python " in text

