"""Candidate hedge policies, evaluated on a replayed world: the figures of each, the cost/tail frontier, and the
candidate a stated goal recommends.

Candidates are `hedge:` blocks exactly as an alias's config takes them, parsed by the gateway's own config parser
(so defaults, validation and `pNN` delays are the gateway's). Extra cost is relative to the same world with
hedging off (failover only), like the load test's "extra cost % (vs no-hedge)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import ConfigError, parse_config
from gateway.config.model import GatewayConfig, HedgeConfig
from gateway.tuning.simulate import SimResult, SimSetup, SimTarget, simulate
from gateway.tuning.world import WorldRequest

OFF = "off"
_FIXED_MS = (100, 200, 300, 500, 800, 1500)
_QUANTILES = ("p75", "p90", "p95", "p99")
_BUDGETS = (5, 10, 20)


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    block: object  # the `hedge:` value as written ("off" or a mapping)
    hedge: HedgeConfig
    timeout_s: float | None = None  # the alias's deadline, when the candidate sets one


@dataclass(frozen=True, slots=True)
class Figures:
    name: str
    requests: int
    errors: int
    ttft_ms: dict[str, float | None]  # streamed, successful requests
    latency_ms: dict[str, float | None]  # successful requests
    cost_usd: float
    wasted_usd: float
    extra_cost_pct: float | None  # against hedging off
    extra_upstream_pct: float
    hedged_pct: float
    hedges_skipped: int

    def key_ms(self, label: str = "p99") -> float:
        """What the frontier ranks by: TTFT when the recording has streams, else latency (inf when unknown)."""
        value = self.ttft_ms.get(label) if self.ttft_ms.get("count") else self.latency_ms.get(label)
        return math.inf if value is None else value

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "requests": self.requests, "errors": self.errors, "ttft_ms": self.ttft_ms,
                "latency_ms": self.latency_ms, "cost_usd": self.cost_usd, "wasted_usd": self.wasted_usd,
                "extra_cost_pct": self.extra_cost_pct, "extra_upstream_pct": self.extra_upstream_pct,
                "hedged_pct": self.hedged_pct, "hedges_skipped": self.hedges_skipped}


def default_blocks() -> dict[str, object]:
    """The default grid: off, fixed delays and adaptive quantiles at three budgets, and racing."""
    blocks: dict[str, object] = {"off": OFF}
    for budget in _BUDGETS:
        for ms in _FIXED_MS:
            blocks[f"fixed-{ms}ms-b{budget}"] = {"delay_ms": ms, "budget_percent": budget}
        for q in _QUANTILES:
            blocks[f"adaptive-{q}-b{budget}"] = {"delay_ms": q, "budget_percent": budget}
    blocks["race-all"] = {"delay_ms": 0, "budget_percent": 100}
    return blocks


def parse_candidates(policies: Mapping[str, object], alias: str, base: GatewayConfig | None = None
                     ) -> list[Candidate]:
    """Candidates from `{name: {hedge: ..., timeout_s: ...}}` (a load-test scenario's `policies`), or from
    `{name: <hedge block>}`. Each is checked by the gateway's config parser; errors name the candidate."""
    out: list[Candidate] = []
    for name, raw in policies.items():
        route = raw if isinstance(raw, Mapping) and ("hedge" in raw or "timeout_s" in raw) else {"hedge": raw}
        unknown = sorted(set(route) - {"hedge", "timeout_s"})
        if unknown:
            raise ConfigError(f"{name}.{unknown[0]}", "not something tune can vary (it takes hedge and timeout_s)")
        block = route.get("hedge", {})
        block = OFF if block is False else block  # YAML 1.1 reads a bare `off` as false
        config = _parse(alias, {"hedge": block, **({"timeout_s": route["timeout_s"]} if "timeout_s" in route
                                                    else {})}, name)
        r = config.models[alias]
        out.append(Candidate(str(name), block, r.hedge, r.timeout_s))
    if not any(not c.hedge.enabled for c in out):
        out.insert(0, Candidate(OFF, OFF, _parse(alias, {"hedge": OFF}, OFF).models[alias].hedge))
    return out


def _parse(alias: str, route: Mapping[str, object], name: str) -> GatewayConfig:
    data = {"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}},
            "models": {alias: {"targets": [{"provider": "p", "model": "m"}], **route}}}
    try:
        return parse_config(data, {})
    except ConfigError as exc:
        field = exc.field.replace(f"models.{alias}", name, 1)
        raise ConfigError(field, str(exc).removeprefix(f"{exc.field}: ")) from None


def setup_for(candidate: Candidate, targets: Sequence[SimTarget], default_deadline_s: float) -> SimSetup:
    deadline = candidate.timeout_s if candidate.timeout_s is not None else default_deadline_s
    return SimSetup(tuple(targets), candidate.hedge, deadline)


def evaluate(candidates: Sequence[Candidate], targets: Sequence[SimTarget], worlds: Sequence[Sequence[WorldRequest]],
             default_deadline_s: float) -> list[Figures]:
    """Every candidate on every world (pooled), with extra cost against the first candidate that does not hedge."""
    runs = []
    for c in candidates:
        setup = setup_for(c, targets, default_deadline_s)
        results = [r for world in worlds for r in simulate(setup, world)]
        runs.append((c, results))
    base = next((sum(r.cost_usd for r in res) for c, res in runs if not c.hedge.enabled), None)
    return [figures(c.name, res, base) for c, res in runs]


def figures(name: str, results: Sequence[SimResult], base_cost: float | None) -> Figures:
    ok = [r for r in results if r.ok]
    cost = sum(r.cost_usd for r in results)
    n = len(results)
    return Figures(
        name=name, requests=n, errors=n - len(ok),
        ttft_ms=summary_ms([r.ttft_s for r in ok if r.stream and r.ttft_s is not None]),
        latency_ms=summary_ms([r.latency_s for r in ok if r.latency_s is not None]),
        cost_usd=cost, wasted_usd=sum(r.wasted_usd for r in results),
        extra_cost_pct=round((cost / base_cost - 1) * 100, 2) if base_cost else None,
        extra_upstream_pct=round((sum(r.sent for r in results) / n - 1) * 100, 2) if n else 0.0,
        hedged_pct=round(100 * sum(r.hedged for r in results) / n, 2) if n else 0.0,
        hedges_skipped=sum(r.hedges_skipped for r in results))


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """count and nearest-rank p50/p90/p99/p99.9 in ms, the load test's percentiles."""
    ordered = sorted(seconds)
    out: dict[str, float | None] = {"count": float(len(ordered))}
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)):
        rank = max(1, math.ceil(q * len(ordered) - 1e-9))
        out[label] = round(1000 * ordered[rank - 1], 1) if ordered else None
    return out


def frontier(results: Sequence[Figures]) -> list[Figures]:
    """The candidates no other beats on both extra cost and tail: sorted by cost, each faster than all cheaper."""
    best = math.inf
    out = []
    for f in sorted(results, key=lambda f: (f.extra_cost_pct or 0.0, f.key_ms())):
        if f.key_ms() < best:
            out.append(f)
            best = f.key_ms()
    return out


def recommend(results: Sequence[Figures], *, max_extra_cost_pct: float | None = None,
              target_p99_ms: float | None = None) -> Figures | None:
    """The goal's pick: the fastest tail within the cost bound, or the cheapest candidate meeting the tail
    target. None when nothing meets it. Candidates with more errors than hedging off are never picked."""
    base_errors = min((f.errors for f in results), default=0)
    usable = [f for f in results if f.errors <= base_errors + max(1, base_errors // 100)]
    if target_p99_ms is not None:
        meeting = [f for f in usable if f.key_ms() <= target_p99_ms]
        return min(meeting, key=lambda f: (f.extra_cost_pct or 0.0, f.key_ms()), default=None)
    bound = 10.0 if max_extra_cost_pct is None else max_extra_cost_pct
    within = [f for f in usable if (f.extra_cost_pct or 0.0) <= bound]
    return min(within, key=lambda f: (f.key_ms(), f.extra_cost_pct or 0.0), default=None)
