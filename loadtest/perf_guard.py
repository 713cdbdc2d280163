"""`python -m loadtest perf --guard`: the CPU regression check the test suite runs.

The gateway (every request traced, spans to its file) and the pass-through run side by side, both pinned to
the core under test, and are measured in turn, non-streaming, `rounds` times (pass-through, gateway,
pass-through, gateway...); the figure kept is the round with the lowest gateway/pass-through CPU ratio. Other
work on the machine only ever adds to one arm's measurement, so it can make one round's ratio too high or too
low; a regression raises every round's. Taking the best of a few rounds therefore keeps the check quiet on a
busy machine without hiding a real regression.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import yaml

from loadtest.perf import BODY, cpu_per_request, gateway_config, ratios
from loadtest.procs import (
    LOAD_CPU,
    UNDER_TEST_CPU,
    Child,
    cancel_on_sigterm,
    free_port,
    start_gateway,
    start_passthrough,
    start_sim_host,
)
from loadtest.wrk import lua_script, wrk_path


async def run_guard(out: Path, *, seconds: float = 2.0, rounds: int = 2) -> dict[str, Any]:
    if wrk_path() is None:
        raise RuntimeError("wrk is needed (Debian package wrk)")
    cancel_on_sigterm()
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    script = out / "wrk-json.lua"
    script.write_text(lua_script("/v1/chat/completions", [orjson.dumps({**BODY, "stream": False})]))
    children: list[Child] = []
    measured: list[dict[str, Any]] = []
    try:
        sims, urls = await start_sim_host({"zero": {"profile": {"output_tokens": 16}, "seed": 1}}, cpu=LOAD_CPU,
                                          log_path=out / "simulators.log")
        children.append(sims)
        port = free_port()
        proxy = await start_passthrough(urls["zero"], port, cpu=UNDER_TEST_CPU, log_path=out / "passthrough.log")
        children.append(proxy)
        gw_port = free_port()
        path = out / "gateway_traced.yaml"
        path.write_text(yaml.safe_dump(gateway_config(urls["zero"], gw_port, out / "gateway_traced-traces.jsonl")))
        os.environ["OTEL_TRACES_SAMPLER"] = "always_on"  # read by the gateway process at start
        try:
            gateway = await start_gateway(path, gw_port, cpu=UNDER_TEST_CPU, log_path=out / "gateway_traced.log")
        finally:
            os.environ.pop("OTEL_TRACES_SAMPLER", None)
        children.append(gateway)
        for _ in range(rounds):
            base = await cpu_per_request(proxy, f"http://127.0.0.1:{port}", script, seconds=seconds)
            traced = await cpu_per_request(gateway, f"http://127.0.0.1:{gw_port}", script, seconds=seconds)
            measured.append({"passthrough": base, "gateway_traced": traced,
                             "cpu_ratio": round(traced["cpu_us_per_request"] / base["cpu_us_per_request"], 2)})
    finally:
        for child in reversed(children):
            await child.stop()
    best = min(measured, key=lambda r: r["cpu_ratio"])
    report: dict[str, Any] = {"seconds": seconds, "rounds": measured,
                              "targets": {"passthrough": {"json": best["passthrough"]},
                                          "gateway_traced": {"json": best["gateway_traced"]}}}
    report["ratios"] = ratios(report)
    (out / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def render_rounds(report: dict[str, Any]) -> str:
    return "CPU ratio by round: " + ", ".join(f"{r['cpu_ratio']:.2f}x" for r in report["rounds"]) + \
        " (the lowest is kept)\n"
