"""Benchmark the worker layer: what a suggestion costs through Redis and a real worker, on CPU.

Answers "how much does the queue add, and how much memory does a worker hold?": round-trip latency
(p50/p95) of `plipbot.suggest` through Redis and a `plipbot worker` process, the same call in
embedded mode (in-process thread pool, same task code and JSON round trip), the bare model call as
the floor, a burst of concurrent requests (micro-batching), and the worker's resident memory.

By default the model is a random checkpoint with PLIP's exact architecture (ViT-B/32, 512-d), so
the compute is PLIP's without needing its weights; numbers say nothing about accuracy. A private
redis-server on a free port is started unless `--redis-url` is given. Not run by the tests. Usage:

    .venv/bin/python bench/worker_bench.py [--n 100] [--model PATH] [--tiny] [--concurrency 4]
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

from plipbot.composition import Container  # noqa: E402
from plipbot.settings import Settings  # noqa: E402
from tests import imagegen  # noqa: E402
from workers.contracts import SuggestResult  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of `pid` in MiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentiles(samples_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, statistics.mean(ordered)


def time_calls(call: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        outcome = call()
        samples.append((time.perf_counter() - started) * 1000)
        if not isinstance(outcome, SuggestResult | list):
            raise SystemExit(f"benchmark call failed: {outcome}")
    return samples


def burst(call: Callable[[], object], clients: int, rounds: int) -> tuple[float, float]:
    """(requests per second, mean batch size) with `clients` concurrent callers."""
    sizes: list[int] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(rounds):
            for outcome in pool.map(lambda _: call(), range(clients)):
                assert isinstance(outcome, SuggestResult), outcome
                sizes.append(outcome.stats.batch_size)
    elapsed = time.perf_counter() - started
    return clients * rounds / elapsed, statistics.mean(sizes)


def make_checkpoint(directory: Path, tiny: bool) -> Path:
    from tests.checkpoints import TINY, VIT_B_32, make_hf_clip

    path = directory / ("tiny-random-clip" if tiny else "random-vit-b-32")
    make_hf_clip(path, TINY if tiny else VIT_B_32, seed=0, content_dominant=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="sequential calls per mode")
    parser.add_argument("--model", help="checkpoint path or registry name (default: random PLIP-shaped)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random model instead")
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    parser.add_argument("--concurrency", type=int, default=4, help="worker threads (and burst clients)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="plipbot-worker-bench-"))
    redis_process = None
    worker = None
    try:
        model = args.model or str(make_checkpoint(workdir, args.tiny))
        if args.redis_url:
            redis_url, prefix = args.redis_url, f"bench-{os.getpid()}:"
        else:
            redis_process, redis_url = start_redis(workdir)
            prefix = ""
        settings_kwargs = {
            "data_dir": workdir / "data",
            "model": {"name": model, "device": "cpu"},
            "workers": {"key_prefix": prefix, "batch_window_ms": 10, "client_timeout_s": 120},
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
        )
        # Convert the weights once, before anyone races to do it.
        Container(Settings(**settings_kwargs)).weights  # type: ignore[arg-type]  # noqa: B018
        log = (workdir / "worker.log").open("wb")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plipbot.cli",
                "worker",
                "--pool=threads",
                f"--concurrency={args.concurrency}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        image = imagegen.encode(imagegen.texture(size=(512, 512), seed=1), "PNG")

        broker = Container(Settings(broker_url=redis_url, **settings_kwargs))  # type: ignore[arg-type]
        client = broker.task_client
        ref = client.upload(image)
        started = time.perf_counter()
        first = client.suggest(ref, preset="kather", timeout_s=300)  # starts torch, loads the model
        cold_s = time.perf_counter() - started
        assert isinstance(first, SuggestResult), first
        rows = [
            ("redis + worker", percentiles(time_calls(lambda: client.suggest(ref, preset="kather"), args.n)))
        ]
        broker_burst = burst(lambda: client.suggest(ref, preset="kather"), args.concurrency, 10)
        upload_ms = percentiles(time_calls(lambda: [client.upload(image)], args.n))
        worker_rss = rss_mib(worker.pid)

        embedded = Container(Settings(**settings_kwargs))  # type: ignore[arg-type]
        local = embedded.task_client
        local_ref = local.upload(image)
        assert isinstance(local.suggest(local_ref, preset="kather"), SuggestResult)
        rows.append(
            ("embedded", percentiles(time_calls(lambda: local.suggest(local_ref, preset="kather"), args.n)))
        )
        embedded_burst = burst(lambda: local.suggest(local_ref, preset="kather"), args.concurrency, 10)

        from model.images import decode_image
        from model.presets import get_preset

        label_set = get_preset("kather")
        zero_shot = embedded.zero_shot

        def direct() -> list[object]:
            return zero_shot.predict([decode_image(image).image], label_set, top_k=3)

        rows.append(("direct model call", percentiles(time_calls(direct, args.n))))
        bench_rss = rss_mib(os.getpid())

        identity = embedded.encoder.identity
        print(f"model: {identity.label} (random weights: compute only), cpu, {os.cpu_count()} cores")
        print(f"image: 512x512 PNG, preset kather (9 labels), {args.n} sequential calls per mode\n")
        print(f"{'mode':<20} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
        for name, (p50, p95, mean) in rows:
            print(f"{name:<20} {p50:8.1f} {p95:8.1f} {mean:8.1f}")
        print(f"{'blob upload (redis)':<20} {upload_ms[0]:8.2f} {upload_ms[1]:8.2f} {upload_ms[2]:8.2f}")
        print()
        print(f"burst, {args.concurrency} concurrent clients x 10 rounds:")
        print(f"  redis + worker  {broker_burst[0]:6.1f} req/s, mean batch {broker_burst[1]:.1f}")
        print(f"  embedded        {embedded_burst[0]:6.1f} req/s, mean batch {embedded_burst[1]:.1f}")
        print()
        print(f"worker first call (torch import + model load): {cold_s:.1f} s")
        print(f"worker RSS: {worker_rss[0]:.0f} MiB (peak {worker_rss[1]:.0f} MiB)")
        print(f"bench process RSS (embedded worker + client + direct model): {bench_rss[0]:.0f} MiB")
        local.close()
        client.close()
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
