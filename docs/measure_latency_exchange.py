"""What sharing latency windows through Redis costs a replica: CPU of one background exchange, of the first
quantile read after it, of a cached read and of recording a sample, in one process against a local redis-server.

    flock /tmp/bench.lock .venv/bin/python docs/measure_latency_exchange.py [--windows 8] [--exchanges 50]

`--windows` shared windows (4 targets, streamed and not, by default) each hold 70 s of history at 50 samples a
second (lognormal TTFT, median 400 ms, sigma 0.3, 3% stalls of +8 s), published once; then `--exchanges`
exchanges with one new sample per window each (steady state: settled buckets kept, about two read per window),
then as many with every bucket read again (as after a reconnection). Needs redis-server on the PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import socket
import subprocess
import tempfile
import time

from gateway.policies.sketch import SharedWindow, bin_of, bucket_of
from gateway.state.latency import RedisLatencyExchange, SharedLatency
from gateway.state.link import RedisLink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(window: SharedWindow, now: float, rng: random.Random) -> None:
    for bucket in range(bucket_of(now - 70), bucket_of(now) + 1):
        bins = window.pending.setdefault(bucket, {})
        for _ in range(500):
            key = bin_of(rng.lognormvariate(math.log(0.4), 0.3) + (8.0 if rng.random() < 0.03 else 0.0))
            bins[key] = bins.get(key, 0) + 1


def cpu_ms(started: float, n: int) -> float:
    return (time.process_time() - started) / n * 1000


async def measure(url: str, windows: int, exchanges: int) -> dict[str, float]:
    link = RedisLink(url, timeout_s=1.0)
    link.start()
    async with asyncio.timeout(10):  # redis-server was just started: the link retries until it answers
        while not link.up:  # noqa: ASYNC110 (the link has no event for "up")
            await asyncio.sleep(0.05)
    shared = SharedLatency(RedisLatencyExchange(link, "measure:"))
    keys = [(f"p{i // 2}", "m", i % 2 == 1) for i in range(windows)]
    shared.watch(dict.fromkeys(keys, 60.0))
    rng = random.Random(1)
    now = time.time()
    for key in keys:
        window = shared.window(key)
        assert window is not None
        fill(window, now, rng)
    assert await shared.sync_once()
    results: dict[str, float] = {}
    started = time.process_time()
    for _ in range(exchanges):
        for key in keys:
            shared.window(key).record(0.4)  # type: ignore[union-attr]
        await shared.sync_once()
    results["exchange_ms"] = cpu_ms(started, exchanges)
    started = time.process_time()
    for _ in range(exchanges):
        shared._settled.clear()  # what a reconnection does
        await shared.sync_once()
    results["exchange_all_buckets_ms"] = cpu_ms(started, exchanges)
    window = shared.window(keys[0])
    assert window is not None
    started = time.process_time()
    for _ in range(200):
        window._quantiles.clear()  # what each install does
        window.quantile_s(0.95, min_samples=20, window_s=60)
    results["first_quantile_ms"] = cpu_ms(started, 200)
    started = time.process_time()
    for _ in range(100_000):
        window.quantile_s(0.95, min_samples=20, window_s=60)
    results["cached_quantile_us"] = cpu_ms(started, 100_000) * 1000
    started = time.process_time()
    for _ in range(100_000):
        window.record(0.42)
    results["record_us"] = cpu_ms(started, 100_000) * 1000
    await link.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--exchanges", type=int, default=50)
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server not found on PATH (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            results = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", args.windows, args.exchanges))
        finally:
            proc.kill()
            proc.wait()
    for name, value in results.items():
        print(f"{name}: {value:.3g}")


if __name__ == "__main__":
    main()
