"""Benchmark the queue: what a round trip through Redis and a worker adds over the embedded call.

Answers "how much does the broker cost a person waiting for a suggestion?": `plipbot.suggest` through
Redis and a real `plipbot worker` process (threads pool), against the very same call in embedded mode
(in-process thread pool, same task code, same JSON round trip), calls interleaved one by one so that
whatever else the machine does weighs on both alike. The overhead is the median of the paired
differences; each mode's time outside the task (`total - task_ms`) says where it goes. Also the bare
model call (the floor) and, with `--burst`, concurrent throughput (micro-batching).

The model is a tiny random CLIP by default: the queue's cost does not depend on the model, and a
small one keeps the numbers readable on a busy machine; `--plip` uses a random checkpoint with PLIP's
architecture (ViT-B/32). Random weights: compute only, nothing about accuracy. A private redis-server
on a free port is started unless `--redis-url` is given. Usage:

    .venv/bin/python bench/worker_bench.py [--n 200] [--plip] [--burst] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import cpu_name, render_table  # noqa: E402
from plipbot.composition import Container  # noqa: E402
from plipbot.settings import Settings  # noqa: E402
from tests import imagegen  # noqa: E402
from workers.contracts import SuggestResult  # noqa: E402

PRESET = "kather"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def make_checkpoint(directory: Path, plip: bool) -> Path:
    from tests.checkpoints import TINY, VIT_B_32, make_hf_clip

    path = directory / ("random-vit-b-32" if plip else "tiny-random-clip")
    make_hf_clip(path, VIT_B_32 if plip else TINY, seed=0, content_dominant=True)
    return path


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*argv, "--dir", str(directory)], stdout=subprocess.DEVNULL)
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.RedisError:
            time.sleep(0.02)
    raise SystemExit("redis-server did not start")


class Sample:
    """One mode's latencies: whole call, and the part spent inside the task."""

    def __init__(self) -> None:
        self.total_ms: list[float] = []
        self.task_ms: list[float] = []

    def add(self, call: Callable[[], object]) -> None:
        started = time.perf_counter()
        outcome = call()
        elapsed = (time.perf_counter() - started) * 1000
        if not isinstance(outcome, SuggestResult):
            raise SystemExit(f"benchmark call failed: {outcome}")
        self.total_ms.append(elapsed)
        self.task_ms.append(outcome.stats.task_ms)

    def outside_ms(self) -> list[float]:
        return [total - task for total, task in zip(self.total_ms, self.task_ms, strict=True)]


def burst(call: Callable[[], object], clients: int, rounds: int) -> tuple[float, float]:
    """(requests per second, mean batch size) with `clients` concurrent callers."""
    sizes: list[int] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(rounds):
            for outcome in pool.map(lambda _: call(), range(clients)):
                assert isinstance(outcome, SuggestResult), outcome
                sizes.append(outcome.stats.batch_size)
    return clients * rounds / (time.perf_counter() - started), statistics.mean(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="interleaved calls per mode")
    parser.add_argument("--plip", action="store_true", help="PLIP-shaped random model (ViT-B/32)")
    parser.add_argument("--model", help="checkpoint path or registry name instead")
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    parser.add_argument("--concurrency", type=int, default=4, help="worker threads (and burst clients)")
    parser.add_argument("--burst", action="store_true", help="also measure concurrent throughput")
    parser.add_argument("--full", action="store_true", help="the PLIP-shaped model, 300 calls, burst")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()
    if args.full:
        args.plip, args.burst, args.n = True, True, max(args.n, 300)

    workdir = Path(tempfile.mkdtemp(prefix="plipbot-worker-bench-"))
    redis_process = None
    worker = None
    try:
        model = args.model or str(make_checkpoint(workdir, args.plip))
        if args.redis_url:
            redis_url, prefix = args.redis_url, f"bench-{os.getpid()}:"
        else:
            redis_process, redis_url = start_redis(workdir)
            prefix = ""
        limits = {"soft_time_limit_s": 600, "time_limit_s": 900, "client_timeout_s": 600}
        settings_kwargs = {
            "data_dir": workdir / "data",
            "model": {"name": model, "device": "cpu"},
            "workers": {"key_prefix": prefix, **limits},
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLIPBOT_")}
        env.update(
            PYTHONPATH=str(REPO),
            HF_HUB_OFFLINE="1",
            PLIPBOT_BROKER_URL=redis_url,
            PLIPBOT_DATA_DIR=str(workdir / "data"),
            PLIPBOT_MODEL__NAME=model,
            PLIPBOT_MODEL__DEVICE="cpu",
            PLIPBOT_WORKERS__KEY_PREFIX=prefix,
            PLIPBOT_WORKERS__SOFT_TIME_LIMIT_S="600",
            PLIPBOT_WORKERS__TIME_LIMIT_S="900",
        )
        # Convert the weights once, before anyone races to do it.
        Container(Settings(**settings_kwargs)).weights  # type: ignore[arg-type]  # noqa: B018
        log = (workdir / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "plipbot.cli", "worker", "--pool=threads", f"--concurrency={args.concurrency}"],  # noqa: E501
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        image = imagegen.encode(imagegen.texture(size=(512, 512), seed=1), "JPEG")

        broker = Container(Settings(broker_url=redis_url, **settings_kwargs))  # type: ignore[arg-type]
        remote = broker.task_client
        embedded = Container(Settings(**settings_kwargs))  # type: ignore[arg-type]
        local = embedded.task_client
        remote_ref, local_ref = remote.upload(image), local.upload(image)
        started = time.perf_counter()
        assert isinstance(remote.suggest(remote_ref, preset=PRESET), SuggestResult)
        cold_s = time.perf_counter() - started
        assert isinstance(local.suggest(local_ref, preset=PRESET), SuggestResult)

        from model.images import decode_image
        from model.presets import get_preset

        label_set, zero_shot = get_preset(PRESET), embedded.zero_shot
        modes = {
            "embedded": (Sample(), lambda: local.suggest(local_ref, preset=PRESET)),
            "redis + worker": (Sample(), lambda: remote.suggest(remote_ref, preset=PRESET)),
            "embedded, upload included": (
                Sample(),
                lambda: local.suggest(local.upload(image), preset=PRESET),
            ),
            "redis + worker, upload included": (
                Sample(),
                lambda: remote.suggest(remote.upload(image), preset=PRESET),
            ),
        }
        direct_ms: list[float] = []
        for _ in range(10):  # warm both sides
            for _sample, call in modes.values():
                call()
        for _ in range(args.n):
            for sample, call in modes.values():
                sample.add(call)
            began = time.perf_counter()
            zero_shot.predict([decode_image(image).image], label_set, top_k=3)
            direct_ms.append((time.perf_counter() - began) * 1000)

        bursts = {}
        if args.burst:
            bursts["embedded"] = burst(modes["embedded"][1], args.concurrency, 10)
            bursts["redis + worker"] = burst(modes["redis + worker"][1], args.concurrency, 10)
        worker_rss = rss_mib(worker.pid)

        base = modes["embedded"][0]
        header = ["mode", "p50 ms", "p95 ms", "outside the task p50", "overhead vs embedded p50 (paired)"]
        body = []
        for name, (sample, _) in modes.items():
            reference = modes["embedded, upload included" if "upload" in name else "embedded"][0]
            paired = [a - b for a, b in zip(sample.total_ms, reference.total_ms, strict=True)]
            body.append(
                [
                    name,
                    f"{pct(sample.total_ms, 50):.1f}",
                    f"{pct(sample.total_ms, 95):.1f}",
                    f"{pct(sample.outside_ms(), 50):.2f}",
                    "baseline" if sample is reference else f"{statistics.median(paired):+.2f}",
                ]
            )
        floor = ["direct model call (floor)", f"{pct(direct_ms, 50):.1f}", f"{pct(direct_ms, 95):.1f}"]
        floor += ["", ""]
        body.append(floor)
        identity = embedded.encoder.identity
        print(
            f"\nQueue overhead: plipbot.suggest (preset {PRESET}, 512x512 JPEG), model {identity.label} "
            f"(random weights), {args.n} interleaved calls per mode; CPU: {cpu_name()}, "
            f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.1f}. "
            "Baseline in the same run: the embedded call.\n"
        )
        print(render_table(header, body, args.markdown))
        worker_task = pct(modes["redis + worker"][0].task_ms, 50)
        print(f"\ninside the task p50: embedded {pct(base.task_ms, 50):.1f} ms, worker {worker_task:.1f} ms")
        for name, (rate, size) in bursts.items():
            rounds = f"{args.concurrency} clients x 10 rounds"
            print(f"burst, {rounds}, {name}: {rate:.1f} req/s, mean batch {size:.1f}")
        print(f"worker: first call {cold_s:.1f} s, RSS {worker_rss:.0f} MiB")
        local.close()
        remote.close()
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
