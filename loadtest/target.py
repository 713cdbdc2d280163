"""`python -m loadtest SCENARIO --target-url URL`: the scenario's traffic against an already-running gateway (a
staging deployment), open loop, nothing started: no simulators, no gateway process, the deployment's own config.

Safety first, because this spends real money on real providers:
- a URL whose host is not a loopback address (127.0.0.0/8, ::1, `localhost`) is refused unless `--allow-remote`
  is given; a name is not resolved to find out (a name that happens to point at 127.0.0.1 is still refused);
- the schedule is cut, before anything is sent, to at most `--max-requests` requests and to what fits in
  `--max-spend` USD, each request priced at its worst case with the scenario's prices: its whole prompt and
  `max_tokens` of output from the dearest provider, twice (a primary and a hedge both answering in full);
- the deployment's `/metrics` is read before and after, and the report shows what the gateway itself counted
  (requests by status, attempts by launch and outcome, cost and wasted cost). They cover everything the
  deployment served meanwhile, so they are exact only when this load is alone; with `--workers N`, /metrics
  answers from one worker only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson

from loadtest import prom
from loadtest.client import RequestResult
from loadtest.costs import CostTotals
from loadtest.driver import client_session, drive_open_loop
from loadtest.procs import cancel_on_sigterm
from loadtest.progress import Progress
from loadtest.report import add_relative_costs, build_report, render_markdown, summarize_policy
from loadtest.schedule import PlannedRequest, build_schedule
from loadtest.spec import Policy, Scenario

WORST_CASE_ATTEMPTS = 2  # a primary and one hedge, both answering in full
METRICS_SETTLE_S = 5.0  # how long to wait for the gateway to count the last answers it sent


class TargetError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Caps:
    max_requests: int
    max_spend_usd: float


@dataclass(frozen=True, slots=True)
class CappedPlan:
    requests: list[PlannedRequest]
    planned: int  # before the caps
    cut_by_requests: int
    cut_by_spend: int
    worst_case_usd: float  # of the requests kept


def check_target_url(url: str, *, allow_remote: bool) -> str:
    """The deployment's base URL (no trailing slash, no /v1); TargetError unless loopback or allowed."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"--target-url: expected http(s)://host[:port], got {url!r}")
    if parts.path.rstrip("/") not in ("", "/v1") or parts.query:
        raise TargetError(f"--target-url: give the gateway's root URL (the tool adds /v1/...), got {url!r}")
    if not allow_remote and not is_loopback(parts.hostname):
        raise TargetError(f"--target-url: {parts.hostname} is not a loopback address; pass --allow-remote to drive "
                          "a remote deployment (it will receive real traffic and spend real money)")
    return f"{parts.scheme}://{parts.netloc}"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: not resolved, so not known to be local


def worst_case_usd(scenario: Scenario, req: PlannedRequest) -> float:
    dearest = max(p.price.cost_usd(req.prompt_tokens, req.max_tokens) for p in scenario.providers)
    return WORST_CASE_ATTEMPTS * dearest


def cap_schedule(scenario: Scenario, schedule: Sequence[PlannedRequest], caps: Caps) -> CappedPlan:
    """The longest prefix of the schedule within both caps (a prefix, so the traffic keeps its shape in time)."""
    kept: list[PlannedRequest] = []
    spent = 0.0
    cut_spend = 0
    for req in schedule[:caps.max_requests]:
        cost = worst_case_usd(scenario, req)
        if spent + cost > caps.max_spend_usd:
            cut_spend = min(len(schedule), caps.max_requests) - len(kept)
            break
        kept.append(req)
        spent += cost
    return CappedPlan(kept, len(schedule), max(0, len(schedule) - caps.max_requests), cut_spend, round(spent, 6))


async def read_metrics(session: aiohttp.ClientSession, base_url: str, key: str | None) -> prom.Samples | None:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        async with session.get(f"{base_url}/metrics", headers=headers) as resp:
            if resp.status != 200:
                print(f"warning: {base_url}/metrics answered {resp.status}: no gateway counters in the report",
                      file=sys.stderr)
                return None
            return prom.parse(await resp.text())
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"warning: cannot read {base_url}/metrics ({type(exc).__name__})", file=sys.stderr)
        return None


async def _settled_metrics(session: aiohttp.ClientSession, base_url: str, key: str | None, before: prom.Samples,
                           alias: str, answered: int) -> prom.Samples | None:
    """/metrics once the gateway has counted every answer the client received (it counts a request after its
    last byte is written, so the last few may lag the client by a moment), or at the settle deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + METRICS_SETTLE_S
    while True:
        after = await read_metrics(session, base_url, key)
        if after is None:
            return None
        counted = prom.delta(before, after).total("gateway_request_duration_seconds_count",
                                                  gen_ai_request_model=alias)
        if counted >= answered or loop.time() >= deadline:
            return after
        await asyncio.sleep(0.05)


async def _drive(scenario: Scenario, base_url: str, plan: CappedPlan, *, api_key: str | None,
                 metrics_key: str | None, progress_stream: TextIO | None
                 ) -> tuple[list[RequestResult], prom.Samples | None, float]:
    cancel_on_sigterm()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as control:
        try:
            async with control.get(f"{base_url}/healthz") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{base_url}/healthz answered {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RuntimeError(f"{base_url} is not reachable ({type(exc).__name__})") from None
        before = await read_metrics(control, base_url, metrics_key)
        started = time.monotonic()
        progress = Progress("target", len(plan.requests), progress_stream)
        progress.start()
        try:
            async with client_session() as load:
                loop = asyncio.get_running_loop()
                results = await drive_open_loop(load, base_url, scenario.alias, plan.requests,
                                                start_at=loop.time() + 0.1,
                                                request_timeout_s=scenario.traffic.request_timeout_s,
                                                hard_timeout_s=scenario.policy_deadline_s(), progress=progress,
                                                api_key=api_key)
        finally:
            await progress.stop()
        wall_s = time.monotonic() - started
        answered = sum(1 for r in results if r.status)
        change = None
        if before is not None:
            after = await _settled_metrics(control, base_url, metrics_key, before, scenario.alias, answered)
            change = None if after is None else prom.delta(before, after)
    return results, change, wall_s


def run_target(scenario: Scenario, url: str, out_dir: Path, *, caps: Caps, allow_remote: bool = False,
               api_key: str | None = None, metrics_key: str | None = None, stdout: TextIO | None = None,
               progress_stream: TextIO | None = None) -> dict[str, Any]:
    """Drive the deployment at `url`; write report.md and report.json to `out_dir`; return the report."""
    base_url = check_target_url(url, allow_remote=allow_remote)
    plan = cap_schedule(scenario, build_schedule(scenario.traffic, scenario.seed), caps)
    if not plan.requests:
        raise TargetError("the caps leave no request to send: raise --max-requests or --max-spend")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    results, change, wall_s = asyncio.run(_drive(scenario, base_url, plan, api_key=api_key,
                                                 metrics_key=metrics_key, progress_stream=progress_stream))
    gateway = prom.gateway_summary(change, scenario.alias) if change is not None else None
    summary = summarize_policy(Policy("target", {}), results, _upstream(gateway), _cost(gateway, scenario, results),
                               _cost(None, scenario, results), wall_s)
    summaries = {"target": summary}
    add_relative_costs(summaries, None)
    report = build_report(scenario, summaries, requests=len(plan.requests), pinned=False)
    report["target"] = {"url": base_url, "max_requests": caps.max_requests, "max_spend_usd": caps.max_spend_usd,
                        "planned": plan.planned, "cut_by_requests": plan.cut_by_requests,
                        "cut_by_spend": plan.cut_by_spend, "worst_case_usd": plan.worst_case_usd,
                        "gateway_metrics": gateway}
    markdown = render_markdown(report) + _render_target(report["target"])
    (out_dir / "report.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")
    print(markdown, file=stdout if stdout is not None else sys.stdout, flush=True)
    return report


def _upstream(gateway: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The deployment's attempts, from its own counters, in the shape the report reads from simulators."""
    if gateway is None:
        return {}
    outcomes = gateway["attempts_by_outcome"]
    return {"deployment": {"received": gateway["attempts_sent"], "completed": outcomes.get("won", 0),
                           "errors": outcomes.get("failed", 0), "disconnected": outcomes.get("cancelled", 0)}}


def _cost(gateway: Mapping[str, Any] | None, scenario: Scenario, results: Sequence[RequestResult]) -> CostTotals:
    if gateway is not None:
        total, wasted = float(gateway["cost_usd"]), float(gateway["wasted_cost_usd"])
        return CostTotals(source="gateway /metrics", total_usd=total, winners_usd=total - wasted, wasted_usd=wasted)
    # Without the gateway's counters: the answers received, priced at the scenario's prices for the provider
    # that answered when it is one of the scenario's, else at the dearest.
    prices = {p.name: p.price for p in scenario.providers}
    dearest = max(scenario.providers, key=lambda p: p.price.output_per_mtok).price
    winners = sum(prices.get(r.provider or "", dearest).cost_usd(r.input_tokens, r.output_tokens)
                  for r in results if r.ok)
    return CostTotals(source="answers x scenario prices", total_usd=winners, winners_usd=winners, wasted_usd=0.0)


def _render_target(target: Mapping[str, Any]) -> str:
    lines = ["", f"Target {target['url']}: {target['planned']} requests planned, cut to "
                 f"{target['planned'] - target['cut_by_requests'] - target['cut_by_spend']} by the caps "
                 f"(--max-requests {target['max_requests']}: -{target['cut_by_requests']}, --max-spend "
                 f"${target['max_spend_usd']:g}: -{target['cut_by_spend']}; worst case of those sent "
                 f"${target['worst_case_usd']:.4f})."]
    gateway = target["gateway_metrics"]
    if gateway is None:
        lines.append("The deployment's /metrics could not be read: costs are the answers' usage at the scenario's "
                     "prices.")
    else:
        lines.append(f"The gateway counted (/metrics after - before): requests by status "
                     f"{gateway['requests_by_status']}, attempts by launch {gateway['attempts_by_launch']}, "
                     f"by outcome {gateway['attempts_by_outcome']}, cost ${gateway['cost_usd']:.6f} "
                     f"(wasted ${gateway['wasted_cost_usd']:.6f}), hedges skipped {gateway['hedges_skipped']}.")
    return "\n".join(lines) + "\n"
