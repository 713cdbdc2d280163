"""`python -m loadtest overhead`: what the gateway adds, next to a bare pass-through proxy and direct calls.

A zero-latency simulated provider is the upstream, so everything measured is the hop itself. Three targets,
one run: the simulator directly, `loadtest.passthrough` in front of it, and the gateway in front of it.
For each: latency (p50, p99) under a fixed open-loop rate, then the most requests per second N closed-loop
connections get through (our own Python client, and `wrk` too when it is installed). The proxy and gateway
run pinned to core 0, the load and the simulator to core 1 (where taskset exists), so the direct figures
are the load side's own ceiling.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
import yaml

from loadtest.client import request_body, request_path, send_request
from loadtest.driver import client_session, drive_open_loop
from loadtest.procs import (
    LOAD_CPU,
    UNDER_TEST_CPU,
    Child,
    cancel_on_sigterm,
    free_port,
    pin_this_process,
    start_gateway,
    start_passthrough,
    start_sim_host,
)
from loadtest.progress import Progress
from loadtest.schedule import PlannedRequest, build_schedule
from loadtest.spec import IntRange, Traffic
from loadtest.stats import summarize_ms
from loadtest.wrk import lua_script, run_wrk, wrk_path

ALIAS = "chat"
TARGETS = ("direct", "passthrough", "gateway")


def _traffic(rate: float, duration_s: float, stream_share: float) -> Traffic:
    return Traffic(rate=rate, duration_s=duration_s, count=None, request_timeout_s=10.0, stream_share=stream_share,
                   anthropic_share=0.0, prompt_tokens=IntRange(100, 100), max_tokens=IntRange(16, 16))


def _gateway_config(sim_url: str, port: int) -> dict[str, Any]:
    # The default hedge is on (its timer is part of the cost) but never fires against a zero-latency upstream.
    # Trace spans are off: this measures the request path, not the exporter.
    return {"server": {"host": "127.0.0.1", "port": port},
            "providers": {"sim": {"kind": "openai", "base_url": sim_url + "/v1", "api_key": "loadtest"}},
            "models": {ALIAS: {"targets": [{"provider": "sim", "model": "sim-model"}],
                               "hedge": {"delay_ms": 400, "budget_percent": 10}}},
            "telemetry": {"traces_file": ""}}


async def closed_loop(session: aiohttp.ClientSession, base_url: str, plan: list[PlannedRequest], concurrency: int,
                      duration_s: float, progress: Progress) -> dict[str, float]:
    """N connections each sending the next request as soon as the last one answered, for `duration_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration_s
    requests = itertools.cycle(plan)
    ok = errors = 0

    async def worker() -> None:
        nonlocal ok, errors
        while loop.time() < deadline:
            progress.sent += 1
            result = await send_request(session, base_url, ALIAS, next(requests), loop.time(), 10.0)
            progress.done += 1
            if result.ok:
                ok += 1
            else:
                errors += 1
                progress.errors += 1

    started = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = loop.time() - started
    return {"requests_per_s": round(ok / elapsed, 1), "ok": ok, "errors": errors, "elapsed_s": round(elapsed, 3)}


async def _measure(name: str, url: str, rate: float, duration_s: float, concurrency: int, throughput_s: float,
                   stream_share: float, progress_stream: TextIO | None, wrk_script: Path | None,
                   load_cpu: int | None) -> dict[str, Any]:
    plan = build_schedule(_traffic(rate, duration_s, stream_share), seed=7)
    async with client_session() as session:
        warmup = Progress(f"{name} warm-up", 0, progress_stream)
        # Open connections and warm caches first; short runs (smoke tests) get a short warm-up.
        await closed_loop(session, url, plan[:50], min(concurrency, 8), min(1.0, duration_s / 2), warmup)
        progress = Progress(f"{name} open-loop {rate:g}/s", len(plan), progress_stream)
        progress.start()
        try:
            loop = asyncio.get_running_loop()
            results = await drive_open_loop(session, url, ALIAS, plan, start_at=loop.time() + 0.05,
                                            request_timeout_s=10.0, hard_timeout_s=duration_s + 15.0,
                                            progress=progress)
        finally:
            await progress.stop()
        progress = Progress(f"{name} closed-loop x{concurrency}", 0, progress_stream)
        progress.start()
        try:
            throughput = await closed_loop(session, url, plan, concurrency, throughput_s, progress)
        finally:
            await progress.stop()
    by_wrk = None
    if wrk_script is not None:
        by_wrk = await run_wrk(url, wrk_script, connections=concurrency, duration_s=throughput_s, cpu=load_cpu)
    latencies = [r.latency_s for r in results if r.latency_s is not None]
    return {"latency_ms": summarize_ms(latencies), "errors": sum(1 for r in results if not r.ok),
            "requests": len(results), "max_send_lag_ms": round(1000 * max(r.send_lag_s for r in results), 3),
            "throughput": throughput, "throughput_wrk": by_wrk}


def _ratios(targets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    direct, proxy, gw = (targets[name] for name in TARGETS)

    def added(target: dict[str, Any], label: str) -> float:
        return round(float(target["latency_ms"][label]) - float(direct["latency_ms"][label]), 3)

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b > 0 else None

    out: dict[str, Any] = {}
    for label in ("p50", "p99"):
        out[f"passthrough_added_{label}_ms"] = added(proxy, label)
        out[f"gateway_added_{label}_ms"] = added(gw, label)
        out[f"gateway_vs_passthrough_added_{label}"] = ratio(added(gw, label), added(proxy, label))
        out[f"gateway_vs_direct_{label}"] = ratio(gw["latency_ms"][label], direct["latency_ms"][label])
    # wrk's figures when it ran for every target: it needs less CPU, so it loads a proxy harder.
    source = "throughput_wrk" if all(targets[name].get("throughput_wrk") for name in TARGETS) else "throughput"
    rps = {name: targets[name][source]["requests_per_s"] for name in TARGETS}
    out["throughput_source"] = "wrk" if source == "throughput_wrk" else "python closed loop"
    out["gateway_vs_passthrough_throughput"] = ratio(rps["gateway"], rps["passthrough"])
    out["gateway_vs_direct_throughput"] = ratio(rps["gateway"], rps["direct"])
    return out


def render_overhead(report: dict[str, Any]) -> str:
    s, r = report["settings"], report["ratios"]
    lines = [f"## Gateway overhead: zero-latency upstream, open loop {s['rate']:g} req/s for {s['duration_s']:g} s, "
             f"closed loop {s['concurrency']} connections for {s['throughput_s']:g} s "
             f"(streamed share {s['stream_share']:g}; CPU pinning {'on' if s['cpu_pinning'] else 'off'})",
             "", f"| target | p50 ms | p99 ms | p99.9 ms | errors | max req/s (python, {s['concurrency']} conns) "
                 f"| max req/s (wrk, {s['concurrency']} conns) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in TARGETS:
        t = report["targets"][name]
        lat = t["latency_ms"]
        wrk = t.get("throughput_wrk")
        lines.append(f"| {name} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['p99.9']:.2f} | {t['errors']} | "
                     f"{t['throughput']['requests_per_s']:.0f} | "
                     f"{'-' if not wrk else format(wrk['requests_per_s'], '.0f')} |")
    lines += ["",
              f"Added latency over direct: pass-through p50 {r['passthrough_added_p50_ms']:.2f} ms, "
              f"p99 {r['passthrough_added_p99_ms']:.2f} ms; gateway p50 {r['gateway_added_p50_ms']:.2f} ms, "
              f"p99 {r['gateway_added_p99_ms']:.2f} ms.",
              f"Gateway / pass-through: added p50 x{r['gateway_vs_passthrough_added_p50']}, added p99 "
              f"x{r['gateway_vs_passthrough_added_p99']}, throughput x{r['gateway_vs_passthrough_throughput']} "
              f"({r['throughput_source']}).",
              f"Gateway / direct: p50 x{r['gateway_vs_direct_p50']}, p99 x{r['gateway_vs_direct_p99']}, "
              f"throughput x{r['gateway_vs_direct_throughput']} (direct: the load side's own ceiling)."]
    return "\n".join(lines) + "\n"


def run_overhead(out_dir: Path, *, rate: float = 100.0, duration_s: float = 10.0, concurrency: int = 32,
                 throughput_s: float = 5.0, stream_share: float = 0.5, pin: bool = True, use_wrk: bool = True,
                 progress_stream: TextIO | None = None, stdout: TextIO | None = None) -> dict[str, Any]:
    """Measure all three targets, write report.md and report.json to `out_dir`, print and return the report."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / "gateway.yaml"
    wrk_script = _write_wrk_script(out_dir, stream_share) if use_wrk and wrk_path() is not None else None
    with pin_this_process(LOAD_CPU if pin else None) as pinned:
        targets = asyncio.run(_measure_all(out_dir, config_path, pinned, rate=rate, duration_s=duration_s,
                                           concurrency=concurrency, throughput_s=throughput_s,
                                           stream_share=stream_share, progress_stream=progress_stream,
                                           wrk_script=wrk_script))
    report = {"settings": {"rate": rate, "duration_s": duration_s, "concurrency": concurrency,
                           "throughput_s": throughput_s, "stream_share": stream_share, "cpu_pinning": pinned},
              "targets": targets, "ratios": _ratios(targets)}
    markdown = render_overhead(report)
    (out_dir / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    print(markdown, file=stdout if stdout is not None else sys.stdout, flush=True)
    return report


def _write_wrk_script(out_dir: Path, stream_share: float) -> Path:
    """Ten bodies, `stream_share` of them streamed: wrk cycles through them."""
    plan = [PlannedRequest(index=i, at_s=0.0, door="openai", stream=i < round(10 * stream_share), prompt_tokens=100,
                           max_tokens=16) for i in range(10)]
    path = out_dir / "wrk-post.lua"
    path.write_text(lua_script(request_path("openai"), [request_body(ALIAS, req) for req in plan]), encoding="utf-8")
    return path


def _write_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


async def _measure_all(out_dir: Path, config_path: Path, pinned: bool, *, rate: float, duration_s: float,
                       concurrency: int, throughput_s: float, stream_share: float,
                       progress_stream: TextIO | None, wrk_script: Path | None) -> dict[str, dict[str, Any]]:
    cancel_on_sigterm()
    under_test_cpu = UNDER_TEST_CPU if pinned else None
    children: list[Child] = []
    try:
        sims, urls = await start_sim_host({"zero": {"profile": {"output_tokens": 16}, "seed": 1}},
                                          cpu=LOAD_CPU if pinned else None, log_path=out_dir / "simulator.log")
        children.append(sims)
        sim = urls["zero"]
        proxy_port, gateway_port = free_port(), free_port()
        children.append(await start_passthrough(sim, proxy_port, cpu=under_test_cpu,
                                                log_path=out_dir / "passthrough.log"))
        _write_config(config_path, _gateway_config(sim, gateway_port))
        children.append(await start_gateway(config_path, gateway_port, cpu=under_test_cpu,
                                            log_path=out_dir / "gateway.log"))
        urls_by_target = {"direct": sim, "passthrough": f"http://127.0.0.1:{proxy_port}",
                          "gateway": f"http://127.0.0.1:{gateway_port}"}
        return {name: await _measure(name, urls_by_target[name], rate, duration_s, concurrency, throughput_s,
                                     stream_share, progress_stream, wrk_script, LOAD_CPU if pinned else None)
                for name in TARGETS}
    finally:
        for child in reversed(children):
            await child.stop()
