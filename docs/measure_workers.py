"""What sharing state between workers costs: CPU per request of `gateway serve --workers 2`, with the workers'
hub (the default) and without it (`state.share_workers: false`), in one run on one machine.

    .venv/bin/python docs/measure_workers.py [--seconds 10] [--out /tmp/measure-workers]

The gateway (supervisor, hub and both workers) is pinned to core 0, the load (this script, open loop at a
fixed rate: CPU per request depends on the rate, so both sides get the same one) and the zero-latency
simulated provider to core 1 (`taskset`, as `python -m loadtest perf` does). CPU is read from /proc for the
whole process tree under test, hub included. Two configurations: no limits (a request never talks to the
hub), and a per-key limit on requests and tokens (each request: one limit check round trip, one
settlement). First, in this process, the CPU of one limit check, local and through a hub (both sides of
the round trip). Results (a JSON line per case, and a Markdown table) go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from gateway.config.model import StateConfig
from gateway.policies.cache import CachedAnswer, CacheOptions, ResponseCache
from gateway.policies.ratelimit import RateLimitOptions
from gateway.state import StateBackend
from gateway.state.hub import Hub
from loadtest.perf import BODY, cpu_seconds
from loadtest.procs import (
    LOAD_CPU,
    UNDER_TEST_CPU,
    cancel_on_sigterm,
    free_port,
    pin_this_process,
    pinned,
    start_sim_host,
)
from loadtest.wrk import lua_script, run_wrk, wrk_path

KEY = "loadtest"


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.extend(tree(int(child)))
    return found


def is_hub(pid: int) -> bool:
    return b"gateway.state.hub" in Path(f"/proc/{pid}/cmdline").read_bytes()  # /proc: never blocks


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def config(sim_url: str, port: int, *, limits: bool, share: bool) -> dict[str, Any]:
    key: dict[str, Any] = {"key": KEY, "name": "loadtest"}
    if limits:  # far above what one machine can send: every request is checked, none refused
        key["limits"] = {"requests_per_minute": 100_000_000, "tokens_per_minute": 1_000_000_000_000}
    return {"server": {"host": "127.0.0.1", "port": port, "api_keys": [key]},
            "providers": {"sim": {"kind": "openai", "base_url": sim_url + "/v1", "api_key": "loadtest"}},
            "models": {"chat": {"targets": [{"provider": "sim", "model": "sim-model"}],
                                "hedge": {"delay_ms": 400, "budget_percent": 10}}},
            "state": {"share_workers": share},
            "telemetry": {"traces_file": ""}}


async def open_loop(url: str, rate: float, seconds: float) -> tuple[int, int]:
    """`rate` requests per second for `seconds`, each sent on time whatever the others do; (ok, failed)."""
    body = orjson.dumps(BODY)
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    loop = asyncio.get_running_loop()

    async def one(http: aiohttp.ClientSession) -> bool:
        try:
            async with http.post(url + "/v1/chat/completions", data=body, headers=headers) as resp:
                await resp.read()
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        start = loop.time() + 0.05
        tasks = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            tasks.append(asyncio.create_task(one(http)))
        results = await asyncio.gather(*tasks)
    return sum(results), len(results) - sum(results)


async def measure(sim_url: str, out: Path, *, limits: bool, share: bool, rate: float, seconds: float,
                  workers: int = 2, wrk_script: Path | None = None) -> dict[str, Any]:
    port = free_port()
    path = out / f"gateway-limits{int(limits)}-share{int(share)}-workers{workers}.yaml"
    path.write_text(yaml.safe_dump(config(sim_url, port, limits=limits, share=share)))
    with (out / f"{path.stem}.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *pinned(["gateway", "serve", "--config", str(path), "--workers", str(workers), "--log-level", "WARNING"],
                    UNDER_TEST_CPU), stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # up (imports are slow on a loaded machine)
                await asyncio.sleep(0.1)
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url + "/healthz") as resp:
                        if resp.status == 200:
                            break
        await open_loop(url, rate, 2)  # warm-up, and both workers up
        hubs = [p for p in tree(proc.pid) if is_hub(p)]
        before, hub_before = tree_cpu_seconds(proc.pid), sum(cpu_seconds(p) for p in hubs)
        if wrk_script is None:
            ok, failed = await open_loop(url, rate, seconds)
        else:  # closed loop, as fast as it goes: wrk, 32 connections
            result = await run_wrk(url, wrk_script, connections=32, duration_s=seconds, cpu=LOAD_CPU)
            if result is None or result["socket_errors"]:
                raise RuntimeError(f"wrk failed: {result}")
            ok, failed = int(float(result["requests_per_s"]) * round(seconds)), int(result["non_2xx"])
        used, hub_used = tree_cpu_seconds(proc.pid) - before, sum(cpu_seconds(p) for p in hubs) - hub_before
        if failed:
            raise RuntimeError(f"{failed} requests failed (see {out})")
        return {"load": "wrk" if wrk_script else f"{rate:g}/s", "workers": workers, "limits": limits,
                "hub": share and workers > 1, "requests": ok,
                "cpu_us_per_request": round(used / ok * 1e6, 1),
                "hub_cpu_us_per_request": round(hub_used / ok * 1e6, 1)}
    finally:
        proc.terminate()
        await proc.wait()


async def micro(count: int = 20_000) -> dict[str, float]:
    """CPU per operation, local against through a hub in this process (so both sides of each round trip are
    counted): a limit check; a token settlement; a cacheable miss (lookup, lease, then storing the answer)."""
    directory = tempfile.mkdtemp(prefix="hub-")
    path = str(Path(directory) / "hub.sock")
    server = await asyncio.get_running_loop().create_unix_server(Hub().protocol, path)
    shared = StateBackend(StateConfig(timeout_ms=1000), hub=path)
    local = StateBackend(StateConfig(), hub="")
    options = RateLimitOptions(requests_per_minute=100_000_000, tokens_per_minute=1_000_000_000_000)
    answer = CachedAnswer(orjson.dumps({"id": "x", "choices": [{"message": {"content": "hello " * 20}}]}), "sim",
                          "m", (("x-gateway-provider", "sim"),))
    caches = {"c": ResponseCache(CacheOptions(ttl_s=60, max_entries=count))}
    figures: dict[str, float] = {}

    async def timed(name: str, state: StateBackend, op: Callable[[StateBackend, int], Awaitable[object]]) -> None:
        started = time.process_time()
        for i in range(count):
            await op(state, i)
        await state.limiter.check("flush", options, 0)  # messages without a reply are handled by now
        figures[name] = round((time.process_time() - started) / count * 1e6, 1)

    async def check(state: StateBackend, _i: int) -> object:
        return await state.limiter.check("k", options, 10)

    async def settle(state: StateBackend, _i: int) -> None:
        await state.limiter.settle("k", options, 10, 12)

    async def miss(state: StateBackend, i: int) -> None:
        answers = state.answers(caches)
        await answers.get("c", f"{id(state)}-{i}")
        await answers.put("c", f"{id(state)}-{i}", answer)

    try:
        await shared.ready(5)
        for label, op in (("check", check), ("settle", settle), ("cache_miss", miss)):
            for where, state in (("local", local), ("hub", shared)):
                await timed(f"{label}_{where}_us", state, op)
        return figures
    finally:
        await shared.aclose()
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, open loop")
    parser.add_argument("--out", type=Path, default=Path("/tmp/measure-workers"))
    args = parser.parse_args()
    cancel_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    with pin_this_process(UNDER_TEST_CPU):
        print(orjson.dumps(await micro()).decode(), flush=True)
    sims, urls = await start_sim_host({"zero": {"profile": {"output_tokens": 16}, "seed": 1}}, cpu=LOAD_CPU,
                                      log_path=args.out / "simulators.log")
    rows = []
    try:
        with pin_this_process(LOAD_CPU):
            # With the per-key limit, without and with the hub, then the other way round: a machine whose load
            # drifts during the run shows as two different figures for the same case.
            for workers, limits, share in ((2, False, False), (2, False, True), (2, True, False), (2, True, True),
                                           (2, True, True), (2, True, False), (1, True, False)):
                row = await measure(urls["zero"], args.out, limits=limits, share=share, rate=args.rate,
                                    seconds=args.seconds, workers=workers)
                print(orjson.dumps(row).decode(), flush=True)
                rows.append(row)
            if wrk_path() is not None:
                script = args.out / "wrk.lua"
                script.write_text(lua_script("/v1/chat/completions", [orjson.dumps(BODY)]))
                for share in (False, True):
                    row = await measure(urls["zero"], args.out, limits=True, share=share, rate=args.rate,
                                        seconds=args.seconds, wrk_script=script)
                    print(orjson.dumps(row).decode(), flush=True)
                    rows.append(row)
    finally:
        await sims.stop()
    print("\n| load | workers | per-key limit | workers' hub | requests | CPU µs/request (whole tree) | of which "
          "the hub |\n|---|---:|---|---|---:|---:|---:|")
    for row in rows:
        hub = "yes" if row["hub"] else ("no (share_workers: false)" if row["workers"] > 1 else "no")
        print(f"| {row['load']} | {row['workers']} | {'yes' if row['limits'] else 'no'} | {hub} "
              f"| {row['requests']} | {row['cpu_us_per_request']:.0f} | {row['hub_cpu_us_per_request']:.0f} |")
    print(f"\n({args.rate:g} requests/s open loop for {args.seconds:g} s per case; load and simulator on core "
          f"{LOAD_CPU}, gateway on core {UNDER_TEST_CPU})")


if __name__ == "__main__":
    try:
        import uvloop  # as the gateway's workers run
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
