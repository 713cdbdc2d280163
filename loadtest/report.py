"""Turns each policy's raw results into figures, and the figures into report.json and a markdown report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from loadtest.client import RequestResult
from loadtest.costs import CostTotals
from loadtest.spec import Policy, Scenario
from loadtest.stats import PERCENTILES, summarize_ms

LAG_WARNING_MS = 50.0  # send lag (p99) beyond which the report warns that the load side could not keep up


def summarize_policy(policy: Policy, results: Sequence[RequestResult], upstream: Mapping[str, Mapping[str, Any]],
                     cost: CostTotals, counters: CostTotals, wall_s: float) -> dict[str, Any]:
    """Every figure of one policy's run. Latency and TTFT cover successful requests (TTFT: streamed ones);
    failures are counted apart, by kind."""
    ok = [r for r in results if r.ok]
    requests = len(results)
    upstream_requests = sum(int(c.get("received", 0)) for c in upstream.values())
    lags = sorted(r.send_lag_s for r in results)
    multi = sum(1 for r in ok if (r.attempts or 1) > 1)
    hedged = cost.hedged_requests
    return {
        "route": policy.route,
        "requests": requests,
        "ok": len(ok),
        "errors": requests - len(ok),
        "error_rate_pct": _pct(requests - len(ok), requests),
        "errors_by_kind": dict(Counter(r.error for r in results if r.error is not None).most_common()),
        "latency_ms": summarize_ms([r.latency_s for r in ok if r.latency_s is not None]),
        "ttft_ms": summarize_ms([r.ttft_s for r in ok if r.stream and r.ttft_s is not None]),
        "upstream_requests": upstream_requests,
        "extra_upstream_pct": round((upstream_requests / requests - 1) * 100, 3) if requests else None,
        "cancelled_upstream": sum(int(c.get("disconnected", 0)) for c in upstream.values()),
        "upstream": {name: dict(c) for name, c in upstream.items()},
        "winners": dict(Counter(r.provider or "?" for r in ok).most_common()),
        "multi_attempt_pct": _pct(multi, len(ok)),  # hedges and failovers, from x-gateway-attempts
        "hedged_pct": None if hedged is None else _pct(hedged, requests),  # telemetry only
        "cost": cost.as_dict(),
        "cost_from_counters": counters.as_dict(),  # the outside estimate, to cross-check telemetry
        "cost_per_1k_requests_usd": round(1000 * cost.total_usd / requests, 6) if requests else None,
        "wasted_pct_of_cost": _pct(cost.wasted_usd, cost.total_usd),
        "extra_cost_pct": None,  # filled in by add_relative_costs, once every policy has run
        "extra_cost_basis": None,
        "send_lag_ms": {"max": round(1000 * lags[-1], 3) if lags else None,
                        "p99": round(1000 * lags[int(0.99 * (len(lags) - 1))], 3) if lags else None},
        "wall_s": round(wall_s, 3),
    }


def add_relative_costs(policies: Mapping[str, dict[str, Any]], baseline: str | None) -> None:
    """Extra cost per request relative to the baseline policy's; without a baseline, relative to the cost
    of the answers the clients got (wasted / winners)."""
    base = policies.get(baseline) if baseline is not None else None
    base_cost = base["cost_per_1k_requests_usd"] if base is not None else None
    for summary in policies.values():
        cost = summary["cost"]
        if base_cost:
            summary["extra_cost_pct"] = round((summary["cost_per_1k_requests_usd"] / base_cost - 1) * 100, 3)
            summary["extra_cost_basis"] = f"vs {baseline}"
        else:
            summary["extra_cost_pct"] = _pct(cost["wasted_usd"], cost["winners_usd"])
            summary["extra_cost_basis"] = "vs winners"


def add_part_costs(policies: Mapping[str, dict[str, Any]], baseline: str | None) -> None:
    """Cost by part per 1,000 requests (telemetry only), and how much of the extra cost over the baseline is
    cold-cache input: uncached input and cache writes, what a backup that had not cached the prompt pays."""
    for summary in policies.values():
        cost, n = summary["cost"], summary["requests"]
        parts = cost.get("parts")
        summary["cost_parts_per_1k_usd"] = None if not parts or not n else {
            part: round(1000 * usd / n, 6) for part, usd in parts.items()}
    base = policies.get(baseline) if baseline is not None else None
    base_parts = base.get("cost_parts_per_1k_usd") if base is not None else None
    for summary in policies.values():
        parts = summary["cost_parts_per_1k_usd"]
        summary["extra_cold_input_pct"] = None
        if parts is None or base_parts is None:
            continue
        extra = sum(parts.values()) - sum(base_parts.values())
        cold = (parts["input"] + parts["cache_write"]) - (base_parts["input"] + base_parts["cache_write"])
        summary["extra_per_1k_usd"] = round(extra, 6)
        summary["extra_cold_input_pct"] = _pct(cold, extra) if extra > 1e-12 else None


def render_parts(policies: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The cost-by-part table, when the costs came from telemetry."""
    if not any(p.get("cost_parts_per_1k_usd") for p in policies.values()):
        return []
    lines = ["", "| policy | $/1k req | uncached input | cache read | cache write | output | extra $/1k | "
                 "extra that is cold-cache input % | wasted $/1k | hedges | hedge cost expected $ | "
                 "hedge cost actual $ | warm-up $ |", "|---|" + "---:|" * 13]
    for name, p in policies.items():
        parts, cost, n = p.get("cost_parts_per_1k_usd"), p["cost"], p["requests"] or 1
        if not parts:
            continue
        cells = [_num(sum(parts.values()), 4), *(_num(parts[k], 4) for k in ("input", "cache_read", "cache_write",
                                                                            "output")),
                 _num(p.get("extra_per_1k_usd"), 4), _num(p.get("extra_cold_input_pct"), 1),
                 _num(1000 * cost["wasted_usd"] / n, 4), str(cost.get("hedges", 0)),
                 _num(cost.get("hedge_expected_usd"), 4), _num(cost.get("hedge_actual_usd"), 4),
                 _num(cost.get("warmup_usd"), 4)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def build_report(scenario: Scenario, policies: Mapping[str, dict[str, Any]], *, requests: int,
                 pinned: bool) -> dict[str, Any]:
    sources = sorted({p["cost"]["source"] for p in policies.values()})
    traffic = scenario.traffic
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "settings": {"seed": scenario.seed, "alias": scenario.alias, "rate": traffic.rate,
                     "duration_s": traffic.duration_s, "count": traffic.count, "requests_planned": requests,
                     "stream_share": traffic.stream_share, "anthropic_share": traffic.anthropic_share,
                     "door": traffic.door,
                     "prompt_tokens": traffic.prompt_tokens.to_json(), "max_tokens": traffic.max_tokens.to_json(),
                     "request_timeout_s": traffic.request_timeout_s, "cpu_pinning": pinned,
                     "rates": [list(r) for r in traffic.rates],
                     "providers": {p.name: {"kind": p.kind, "profile": p.profile} for p in scenario.providers},
                     "changes": [{"at_s": c.at_s, "provider": c.provider} for c in scenario.changes]},
        "baseline": scenario.baseline,
        "source": scenario.source,
        "cost_source": " + ".join(sources),
        "policies": dict(policies),
    }


def render_markdown(report: Mapping[str, Any]) -> str:
    s = report["settings"]
    policies: Mapping[str, Mapping[str, Any]] = report["policies"]
    labels = [label for label, _ in PERCENTILES]
    lines = [
        f"## {report['scenario']}: {s['requests_planned']} requests per policy, Poisson {s['rate']:g} req/s "
        f"for {s['duration_s']:g} s (seed {s['seed']})",
        "",
        f"Cost source: {report['cost_source']}. Latency and TTFT in ms from the *scheduled* send time, "
        "successful requests only (TTFT: streamed requests).",
        "",
        "| policy | " + " | ".join(labels) + " | " + " | ".join(f"TTFT {label}" for label in labels) + " |",
        "|---|" + "---:|" * (2 * len(labels)),
    ]
    for name, p in policies.items():
        cells = [_ms(p["latency_ms"][label]) for label in labels] + [_ms(p["ttft_ms"][label]) for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    basis = next((p["extra_cost_basis"] for p in policies.values() if p["extra_cost_basis"]), "")
    lines += [
        "",
        f"| policy | requests | errors % | upstream req | extra upstream % | cancelled losers | multi-attempt % "
        f"| cost $/1k req | extra cost % ({basis}) | wasted $ | wasted % |",
        "|---|" + "---:|" * 10,
    ]
    for name, p in policies.items():
        cost = p["cost"]
        cells = [str(p["requests"]), _num(p["error_rate_pct"], 2), str(p["upstream_requests"]),
                 _num(p["extra_upstream_pct"], 1), str(p["cancelled_upstream"]), _num(p["multi_attempt_pct"], 1),
                 _num(p["cost_per_1k_requests_usd"], 4), _num(p["extra_cost_pct"], 1),
                 _num(cost["wasted_usd"], 5), _num(p["wasted_pct_of_cost"], 1)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += render_parts(policies)
    lines += ["", "| policy | provider | received | completed | errors | cancelled | tokens sent | won |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, p in policies.items():
        for provider, c in p["upstream"].items():
            lines.append(f"| {name} | {provider} | {c.get('received', 0)} | {c.get('completed', 0)} | "
                         f"{c.get('errors', 0)} | {c.get('disconnected', 0)} | {c.get('tokens_sent', 0)} | "
                         f"{p['winners'].get(provider, 0)} |")
    errors = {name: p["errors_by_kind"] for name, p in policies.items() if p["errors_by_kind"]}
    if errors:
        lines += ["", "Errors by kind: " + "; ".join(
            f"{name}: " + ", ".join(f"{kind} x{n}" for kind, n in kinds.items()) for name, kinds in errors.items())]
    worst_lag = max((p["send_lag_ms"]["max"] or 0.0) for p in policies.values())
    worst_p99 = max((p["send_lag_ms"]["p99"] or 0.0) for p in policies.values())
    lines += ["", f"Load generator: send lag behind schedule p99 {worst_p99:.1f} ms, max {worst_lag:.1f} ms "
                  f"(worst policy; CPU pinning {'on' if s['cpu_pinning'] else 'off'})."]
    if worst_p99 > LAG_WARNING_MS:
        lines.append(f"WARNING: the load generator fell behind by more than {LAG_WARNING_MS:g} ms for over 1% of "
                     "requests (a busy machine?): those latencies include its own lag.")
    return "\n".join(lines) + "\n"


def _pct(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 3) if whole else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
