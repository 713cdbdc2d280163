"""What sharing state between workers costs: CPU per request of `gateway serve --workers 2`, with the workers'
hub (the default) and without it (`state.share_workers: false`), in one run on one machine.

    .venv/bin/python docs/measure_workers.py [--seconds 10] [--out /tmp/measure-workers]

The gateway (supervisor, hub and both workers) is pinned to core 0, wrk and the zero-latency simulated
provider to core 1 (`taskset`, as `python -m loadtest perf` does). CPU is read from /proc for the whole
process tree under test, hub included. Two configurations: no limits (a request never talks to the hub),
and a per-key limit on requests and tokens (each request: one limit check round trip, one settlement).
Needs wrk (Debian package wrk). Results (a JSON line per case, and a Markdown table) go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from loadtest.perf import BODY, cpu_seconds
from loadtest.procs import LOAD_CPU, UNDER_TEST_CPU, cancel_on_sigterm, free_port, pinned, start_sim_host
from loadtest.wrk import lua_script, run_wrk

KEY = "loadtest"


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found.extend(tree(int(child)))
    return found


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


async def measure(sim_url: str, out: Path, script: Path, *, limits: bool, share: bool,
                  seconds: float) -> dict[str, Any]:
    port = free_port()
    path = out / f"gateway-limits{int(limits)}-share{int(share)}.yaml"
    path.write_text(yaml.safe_dump(config(sim_url, port, limits=limits, share=share)))
    with (out / f"{path.stem}.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *pinned(["gateway", "serve", "--config", str(path), "--workers", "2", "--log-level", "WARNING"],
                    UNDER_TEST_CPU), stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # both workers up (imports are slow on a loaded machine)
                await asyncio.sleep(0.1)
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url + "/healthz") as resp:
                        if resp.status == 200:
                            break
        await asyncio.sleep(2)  # the second worker too
        await run_wrk(url, script, connections=32, duration_s=2, cpu=LOAD_CPU)  # warm-up
        before = tree_cpu_seconds(proc.pid)
        result = await run_wrk(url, script, connections=32, duration_s=seconds, cpu=LOAD_CPU)
        used = tree_cpu_seconds(proc.pid) - before
        if result is None or result["non_2xx"] or result["socket_errors"]:
            raise RuntimeError(f"wrk failed: {result}")
        rate = float(result["requests_per_s"])
        return {"limits": limits, "hub": share, "requests_per_s": round(rate, 1),
                "cpu_us_per_request": round(used / (rate * round(seconds)) * 1e6, 1)}
    finally:
        proc.terminate()
        await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/measure-workers"))
    args = parser.parse_args()
    cancel_on_sigterm()
    args.out.mkdir(parents=True, exist_ok=True)
    script = args.out / "post.lua"
    script.write_text(lua_script("/v1/chat/completions", [orjson.dumps(BODY)]))
    sims, urls = await start_sim_host({"zero": {"profile": {"output_tokens": 16}, "seed": 1}}, cpu=LOAD_CPU,
                                      log_path=args.out / "simulators.log")
    rows = []
    try:
        for limits in (False, True):
            for share in (False, True):
                row = await measure(urls["zero"], args.out, script, limits=limits, share=share,
                                    seconds=args.seconds)
                print(orjson.dumps(row).decode(), flush=True)
                rows.append(row)
    finally:
        await sims.stop()
    print("\n| per-key limit | workers' hub | req/s | CPU µs/request (whole tree) |\n|---|---|---:|---:|")
    for row in rows:
        print(f"| {'yes' if row['limits'] else 'no'} | {'yes' if row['hub'] else 'no (share_workers: false)'} "
              f"| {row['requests_per_s']:.0f} | {row['cpu_us_per_request']:.0f} |")
    print(f"\n(pid {os.getpid()}, {args.seconds:g} s per case, 32 connections, wrk on core {LOAD_CPU}, "
          f"gateway on core {UNDER_TEST_CPU})")


if __name__ == "__main__":
    asyncio.run(main())
