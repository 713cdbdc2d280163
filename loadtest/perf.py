"""`python -m loadtest perf`: what the gateway costs on the request path, next to a bare aiohttp pass-through.

One run, same machine, ratios only (the machine is noisy; absolute figures move between runs):
- CPU per request and maximum throughput (wrk, closed loop), non-streaming and streaming, for the pass-through,
  the floor (`loadtest.floor`: the mechanical work of any gateway on this stack, without features), the gateway
  with every request traced (spans to its JSON-lines file), and the gateway with tracing sampled out
  (`OTEL_TRACES_SAMPLER=always_off`; metrics still on). CPU is read from /proc for the process under test.
- Added latency (p50, p99) at a fixed open-loop rate (default 500 requests/s), gateway against pass-through.
- Memory per in-flight request: resident memory with 1,000 concurrent slow requests held open, minus idle.

`--workers N` adds how throughput scales on every core: `gateway serve --workers N` against N pass-through
processes on one port (see `loadtest.perf_scaling`).

`--guard` runs a short non-streaming CPU comparison only and exits 1 when the gateway's CPU per request is
above `--max-cpu-ratio` times the pass-through's: the regression check the test suite runs.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from loadtest.overhead import _measure
from loadtest.procs import (
    LOAD_CPU,
    UNDER_TEST_CPU,
    Child,
    cancel_on_sigterm,
    free_port,
    start_floor,
    start_gateway,
    start_passthrough,
    start_sim_host,
)
from loadtest.wrk import lua_script, run_wrk, wrk_path

ALIAS = "chat"
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
BODY = {"model": ALIAS, "messages": [{"role": "user", "content": "Hello there, how are you today?"}],
        "max_tokens": 16}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def gateway_config(sim_url: str, port: int, traces_file: Path) -> dict[str, Any]:
    # Hedging configured (400 ms) but the upstream is instant, so no hedge fires: the common case.
    return {"server": {"host": "127.0.0.1", "port": port},
            "providers": {"sim": {"kind": "openai", "base_url": sim_url + "/v1", "api_key": "loadtest"}},
            "models": {ALIAS: {"targets": [{"provider": "sim", "model": "sim-model"}],
                               "hedge": {"delay_ms": 400, "budget_percent": 10}}},
            "telemetry": {"traces_file": str(traces_file)}}


async def cpu_per_request(child: Child, url: str, script: Path, *, seconds: float,
                          connections: int = 32) -> dict[str, float]:
    """Closed-loop wrk against `url`: requests per second and CPU microseconds per request of `child`."""
    await run_wrk(url, script, connections=connections, duration_s=1, cpu=LOAD_CPU)  # warm-up
    before = cpu_seconds(child.process.pid)
    result = await run_wrk(url, script, connections=connections, duration_s=seconds, cpu=LOAD_CPU)
    used = cpu_seconds(child.process.pid) - before
    if result is None or result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"wrk failed against {url}: {result}")
    rate = float(result["requests_per_s"])
    return {"requests_per_s": round(rate, 1), "cpu_us_per_request": round(used / (rate * round(seconds)) * 1e6, 1)}


async def memory_per_in_flight(child: Child, url: str, slow_sim: str, count: int = 1000) -> dict[str, float]:
    """Hold `count` requests open against a provider that never answers in time; resident memory per request."""
    idle = rss_bytes(child.process.pid)
    body = orjson.dumps({**BODY, "model": "slow"})
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one() -> None:
            async with http.post(f"{url}/v1/chat/completions", data=body,
                                 headers={"content-type": "application/json"}) as resp:
                await resp.read()

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        try:
            for _ in range(600):
                async with http.get(f"{slow_sim}/_sim/stats") as resp:
                    if (await resp.json())["in_flight"] >= count:
                        break
                await asyncio.sleep(0.05)
            loaded = rss_bytes(child.process.pid)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return {"in_flight": count, "idle_rss_mb": round(idle / 2**20, 1), "loaded_rss_mb": round(loaded / 2**20, 1),
            "kb_per_request": round((loaded - idle) / count / 1024, 1)}


async def run_perf(out: Path, *, seconds: float = 5.0, rate: float = 500.0, latency_s: float = 10.0,
                   workers: int = 1) -> dict[str, Any]:
    if wrk_path() is None:
        raise RuntimeError("wrk is needed (Debian package wrk)")
    cancel_on_sigterm()
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    scripts = {}
    for kind, stream in (("json", False), ("stream", True)):
        scripts[kind] = out / f"wrk-{kind}.lua"
        scripts[kind].write_text(lua_script("/v1/chat/completions", [orjson.dumps({**BODY, "stream": stream})]))
    kinds = ("json", "stream")
    children: list[Child] = []
    report: dict[str, Any] = {"seconds": seconds, "targets": {}}
    try:
        sims, urls = await start_sim_host({"zero": {"profile": {"output_tokens": 16}, "seed": 1},
                                           "slow": {"profile": {"ttft": 60000}, "seed": 2}},
                                          cpu=LOAD_CPU, log_path=out / "simulators.log")
        children.append(sims)
        port = free_port()
        proxy = await start_passthrough(urls["zero"], port, cpu=UNDER_TEST_CPU, log_path=out / "passthrough.log")
        children.append(proxy)
        proxy_url = f"http://127.0.0.1:{port}"
        report["targets"]["passthrough"] = {k: await cpu_per_request(proxy, proxy_url, scripts[k], seconds=seconds)
                                            for k in kinds}
        # The floor: what any gateway on this stack costs before its features (see `loadtest.floor`).
        floor_port = free_port()
        floor = await start_floor(urls["zero"], floor_port, cpu=UNDER_TEST_CPU, log_path=out / "floor.log")
        children.append(floor)
        report["targets"]["floor"] = {k: await cpu_per_request(floor, f"http://127.0.0.1:{floor_port}", scripts[k],
                                                               seconds=seconds) for k in kinds}
        await floor.stop()
        children.remove(floor)
        modes = (("gateway_traced", "always_on"), ("gateway_sampled_out", "always_off"))
        gateways: dict[str, tuple[Child, str]] = {}
        for name, sampler in modes:
            gw_port = free_port()
            config = gateway_config(urls["zero"], gw_port, out / f"{name}-traces.jsonl")
            config["models"]["slow"] = {"targets": [{"provider": "slow", "model": "slow"}], "hedge": "off",
                                        "timeout_s": 120}
            config["providers"]["slow"] = {"kind": "openai", "base_url": urls["slow"] + "/v1", "timeout_s": 120}
            path = out / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config))
            os.environ["OTEL_TRACES_SAMPLER"] = sampler  # read by the gateway process at start
            try:
                gateway = await start_gateway(path, gw_port, cpu=UNDER_TEST_CPU, log_path=out / f"{name}.log")
            finally:
                os.environ.pop("OTEL_TRACES_SAMPLER", None)
            children.append(gateway)
            gateways[name] = gateway, f"http://127.0.0.1:{gw_port}"
        # Every CPU arm before the latency and memory tests: 1,000 held requests and their teardown (on both
        # sides, the simulator's included, on the load's core) must not disturb a later arm's measurement.
        for name, (gateway, gw_url) in gateways.items():
            report["targets"][name] = {k: await cpu_per_request(gateway, gw_url, scripts[k], seconds=seconds)
                                       for k in kinds}
        gateway, gw_url = gateways["gateway_traced"]
        report["latency"] = {
            "rate": rate,
            "passthrough": await _latency(proxy_url, rate, latency_s),
            "gateway_traced": await _latency(gw_url, rate, latency_s)}
        report["memory"] = await memory_per_in_flight(gateway, gw_url, urls["slow"])
        for gateway, _ in gateways.values():
            await gateway.stop()
            children.remove(gateway)
        if workers > 1:
            from loadtest.perf_scaling import run_scaling, scaled

            config = gateway_config(urls["zero"], free_port(), out / "gateway_workers-traces.jsonl")
            await proxy.stop()  # every core for the scaling arms
            children.remove(proxy)
            scaling = await run_scaling(out, urls["zero"], config, scripts, workers=workers, seconds=seconds)
            scaling["scaled"] = scaled(report["targets"], scaling)
            report["scaling"] = scaling
    finally:
        for child in reversed(children):
            await child.stop()
    report["ratios"] = ratios(report)
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out / "report.md").write_text(render(report))
    return report


async def _latency(url: str, rate: float, seconds: float) -> dict[str, Any]:
    measured = await _measure("latency", url, rate, seconds, 8, 0.5, 0.0, None, None, LOAD_CPU)
    return {"latency_ms": measured["latency_ms"], "errors": measured["errors"], "requests": measured["requests"]}


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    base = report["targets"]["passthrough"]
    out: dict[str, Any] = {}
    for name, figures in report["targets"].items():
        if name == "passthrough":
            continue
        for kind, f in figures.items():
            out[f"{name}.{kind}"] = {
                "throughput_ratio": round(f["requests_per_s"] / base[kind]["requests_per_s"], 2),
                "cpu_ratio": round(f["cpu_us_per_request"] / base[kind]["cpu_us_per_request"], 2)}
    latency = report.get("latency")
    if latency:
        direct_free = {k: latency[k]["latency_ms"] for k in ("passthrough", "gateway_traced")}
        out["latency_ratio_p50"] = round(direct_free["gateway_traced"]["p50"] / direct_free["passthrough"]["p50"], 2)
        out["latency_ratio_p99"] = round(direct_free["gateway_traced"]["p99"] / direct_free["passthrough"]["p99"], 2)
    return out


def render(report: dict[str, Any]) -> str:
    lines = [f"## Gateway cost on the request path (zero-latency upstream, wrk 32 connections, {report['seconds']:g} s"
             " each; gateway and pass-through pinned to core 0, load and simulator to core 1)", "",
             "| target | mode | req/s | CPU µs/request | throughput vs pass-through | CPU vs pass-through |",
             "|---|---|---:|---:|---:|---:|"]
    for name, figures in report["targets"].items():
        for kind, f in figures.items():
            r = report["ratios"].get(f"{name}.{kind}", {"throughput_ratio": 1.0, "cpu_ratio": 1.0})
            lines.append(f"| {name} | {kind} | {f['requests_per_s']:.0f} | {f['cpu_us_per_request']:.0f} | "
                         f"{r['throughput_ratio']:.2f} | {r['cpu_ratio']:.2f} |")
    if "floor" in report["targets"]:
        lines += ["", "floor: `loadtest.floor`, what any gateway on this stack does before its features (the request "
                  "parsed and streamed upstream, every event parsed, the answer assembled or forwarded)."]
    latency = report.get("latency")
    if latency:
        lines += ["", f"Latency at {latency['rate']:g} requests/s open loop (ms, scheduled send to answer):", "",
                  "| target | p50 | p99 | errors |", "|---|---:|---:|---:|"]
        for name in ("passthrough", "gateway_traced"):
            lat = latency[name]
            lines.append(f"| {name} | {lat['latency_ms']['p50']:.2f} | {lat['latency_ms']['p99']:.2f} | "
                         f"{lat['errors']} |")
        lines.append(f"\nGateway / pass-through latency: p50 x{report['ratios']['latency_ratio_p50']}, "
                     f"p99 x{report['ratios']['latency_ratio_p99']}.")
    memory = report.get("memory")
    if memory:
        lines.append(f"\nMemory: {memory['in_flight']} in-flight slow requests: RSS {memory['idle_rss_mb']} MB idle, "
                     f"{memory['loaded_rss_mb']} MB loaded: {memory['kb_per_request']} KB per in-flight request.")
    if report.get("scaling"):
        from loadtest.perf_scaling import render_scaling

        lines += render_scaling(report["scaling"])
    return "\n".join(lines) + "\n"
