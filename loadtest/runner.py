"""Runs a scenario: the simulators once, then for each policy a fresh gateway process and the same load.

Per policy: write its gateway config, start `python -m gateway serve` and wait for /healthz, restore and
reset the simulators (same seed, same outage clock), drive the schedule open-loop, wait for cancelled
losers to land, read the simulators' counters, stop the gateway, read its trace file for the costs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
import yaml

from loadtest import sim_control
from loadtest.client import RequestResult
from loadtest.costs import CostTotals, counter_costs, read_trace_costs
from loadtest.driver import client_session, drive_open_loop
from loadtest.gateway_config import gateway_config, warm_alias
from loadtest.procs import (
    LOAD_CPU,
    UNDER_TEST_CPU,
    cancel_on_sigterm,
    free_port,
    pin_this_process,
    start_gateway,
    start_sim_host,
)
from loadtest.progress import Progress
from loadtest.report import add_part_costs, add_relative_costs, build_report, render_markdown, summarize_policy
from loadtest.schedule import PlannedRequest, build_schedule
from loadtest.spec import Policy, Scenario
from loadtest.warmup import warm_up

START_MARGIN_S = 0.1  # between resetting the simulators and the first scheduled send


@dataclass(slots=True)
class PolicyRun:
    policy: Policy
    results: list[RequestResult]
    upstream: dict[str, dict[str, Any]]
    cost: CostTotals  # from telemetry when the gateway wrote spans, else `counters`
    counters: CostTotals  # rebuilt from the simulators' counters: a cross-check on telemetry
    wall_s: float


def run_scenario(scenario: Scenario, out_dir: Path, *, plot: bool = True, pin: bool = True,
                 progress_stream: TextIO | None = None, stdout: TextIO | None = None) -> dict[str, Any]:
    """Run every policy of `scenario`, write report.md, report.json (and plot.png) to `out_dir`; return the
    report. The markdown report is also printed to `stdout`. Starts (and ends) its own event loop."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    schedule = build_schedule(scenario.traffic, scenario.seed)
    if not schedule:
        raise ValueError("the traffic settings schedule no requests: raise traffic.rate or traffic.duration_s")
    with pin_this_process(LOAD_CPU if pin else None) as pinned:
        runs = asyncio.run(_run_policies(scenario, schedule, out_dir, pinned=pinned, progress_stream=progress_stream))

    summaries = {run.policy.name: summarize_policy(run.policy, run.results, run.upstream, run.cost, run.counters,
                                                   run.wall_s)
                 for run in runs}
    add_relative_costs(summaries, scenario.baseline)
    add_part_costs(summaries, scenario.baseline)
    report = build_report(scenario, summaries, requests=len(schedule), pinned=pinned)
    markdown = render_markdown(report)
    (out_dir / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    if plot:
        from loadtest.plot import write_plot

        latencies = {run.policy.name: [r.latency_s for r in run.results if r.latency_s is not None] for run in runs}
        write_plot(out_dir / "plot.png", report, latencies)
    print(markdown, file=stdout if stdout is not None else sys.stdout, flush=True)
    return report


async def _run_policies(scenario: Scenario, schedule: list[PlannedRequest], out_dir: Path, *, pinned: bool,
                        progress_stream: TextIO | None) -> list[PolicyRun]:
    cancel_on_sigterm()
    specs = {p.name: {"profile": p.profile, "seed": p.seed} for p in scenario.providers}
    sims, urls = await start_sim_host(specs, cpu=LOAD_CPU if pinned else None, log_path=out_dir / "simulators.log")
    runs: list[PolicyRun] = []
    try:
        async with aiohttp.ClientSession() as control:
            for policy in scenario.policies:
                runs.append(await _run_policy(scenario, policy, schedule, urls, out_dir, control,
                                              pinned=pinned, progress_stream=progress_stream))
    finally:
        await sims.stop()
    return runs


def _prepare_policy_files(out_dir: Path, policy: Policy, config: dict[str, Any]) -> Path:
    """Write the policy's gateway config; remove its old trace file, whose spans must not be counted again."""
    (out_dir / f"traces-{policy.name}.jsonl").unlink(missing_ok=True)
    path = out_dir / f"gateway-{policy.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


async def _run_policy(scenario: Scenario, policy: Policy, schedule: list[PlannedRequest], urls: dict[str, str],
                      out_dir: Path, control: aiohttp.ClientSession, *,
                      pinned: bool, progress_stream: TextIO | None) -> PolicyRun:
    port = free_port()
    traces = out_dir / f"traces-{policy.name}.jsonl"
    config = gateway_config(scenario.providers, policy, scenario.alias, urls, port, str(traces), out_dir)
    config_path = _prepare_policy_files(out_dir, policy, config)
    started = time.monotonic()
    gateway = await start_gateway(config_path, port, cpu=UNDER_TEST_CPU if pinned else None,
                                  log_path=out_dir / f"gateway-{policy.name}.log")
    try:
        for p in scenario.providers:
            if scenario.changes:  # undo the previous policy's profile changes
                await sim_control.set_profile(control, urls[p.name], p.profile)
            await sim_control.reset(control, urls[p.name])
        if policy.warm:
            async with client_session() as warm:
                warm_failures = await warm_up(warm, f"http://127.0.0.1:{port}", scenario.alias, policy, schedule,
                                              scenario.traffic.request_timeout_s)
            if warm_failures:
                print(f"\nwarning: {warm_failures} warm-up requests failed", file=sys.stderr)
        loop = asyncio.get_running_loop()
        start_at = loop.time() + START_MARGIN_S
        changes = [asyncio.create_task(_change_at(control, loop, start_at + c.at_s, urls[c.provider], c.profile))
                   for c in scenario.changes]
        progress = Progress(policy.name, len(schedule), progress_stream)
        progress.start()
        try:
            # A fresh connection pool per policy: each gateway starts from the same cold connections.
            async with client_session() as load:
                results = await drive_open_loop(load, f"http://127.0.0.1:{port}", scenario.alias, schedule,
                                                start_at=start_at,
                                                request_timeout_s=scenario.traffic.request_timeout_s,
                                                hard_timeout_s=scenario.policy_deadline_s(), progress=progress)
        finally:
            await progress.stop()
            for task in changes:
                task.cancel()
            await asyncio.gather(*changes, return_exceptions=True)
        await sim_control.wait_idle(control, urls)
        upstream = {name: await sim_control.stats(control, url) for name, url in urls.items()}
    finally:
        await gateway.stop()
    wall_s = time.monotonic() - started
    counters = counter_costs(scenario.providers, upstream, results)
    cost = read_trace_costs(traces, scenario.alias, warm_aliases=[warm_alias(scenario.alias, name)
                                                                  for name in policy.warm]) or counters
    return PolicyRun(policy, results, upstream, cost, counters, wall_s)


async def _change_at(control: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop, when: float, url: str,
                     profile: dict[str, Any]) -> None:
    await asyncio.sleep(max(0.0, when - loop.time()))
    try:
        await sim_control.set_profile(control, url, profile)
    except (aiohttp.ClientError, RuntimeError) as exc:  # the run goes on; the report would mislead without a word
        print(f"\nwarning: profile change at {url} failed: {exc}", file=sys.stderr)
