"""Claude-Code-like sessions in the load tool: turns that repeat their session's earlier turns exactly (so a
provider's prompt cache can hit), and the cost by part read from the attempt spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gateway.simulator.billing import PromptCache
from loadtest.client import request_body
from loadtest.costs import read_trace_costs
from loadtest.report import add_part_costs, render_parts
from loadtest.scenario import parse_scenario
from loadtest.schedule import build_schedule

SCENARIO: dict[str, Any] = {
    "providers": {"a": {"kind": "anthropic", "model": "claude-sonnet-4-5"}, "b": {"kind": "anthropic"}},
    "traffic": {"rate": 10, "duration_s": 2, "sessions": 2, "cached_prefix_tokens": 5_000,
                "prompt_tokens": [200, 600]},
    "policies": {"off": {"hedge": "off"}, "warm": {"hedge": {"delay_ms": 100}, "warm": ["b"]}},
}


def test_turns_extend_their_session_and_hit_the_simulated_cache() -> None:
    scenario = parse_scenario(SCENARIO)
    assert scenario.policies[1].warm == ("b",) and scenario.providers[0].price.cache_read_per_mtok == 0.3
    assert scenario.providers[0].price.source != "none" and not scenario.providers[0].price_configured
    plan = build_schedule(scenario.traffic, scenario.seed)
    first, third = plan[0], plan[2]  # turns 0 and 1 of session 0
    assert (first.session, third.session, len(third.history)) == (0, 0, 1)
    assert third.history == (first.prompt_tokens,)
    cache = PromptCache()
    assert cache.bill_anthropic(orjson.loads(request_body("chat", first)), now=0).cache_write >= 5_000
    billing = cache.bill_anthropic(orjson.loads(request_body("chat", third)), now=1)
    assert billing.cache_read >= 5_000 + first.prompt_tokens  # the whole first turn is read back
    assert billing.cache_write < 700  # only the new turn is written
    other = cache.bill_anthropic(orjson.loads(request_body("chat", plan[1])), now=2)  # session 1: its own prefix
    assert other.cache_read == 0


def test_costs_by_part_come_from_the_attempt_spans_of_the_alias(tmp_path: Path) -> None:
    def span(name: str, span_id: int, parent: int | None, kind: str, **attrs: object) -> bytes:
        return orjson.dumps({"name": name, "span_id": span_id, "parent_id": parent, "kind": kind, "attributes": attrs})

    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join([
        span("chat chat", 1, None, "SERVER", **{"gateway.cost_usd": 0.5, "gateway.wasted_cost_usd": 0.4}),
        span("chat m", 2, 1, "CLIENT", **{"gateway.attempt.index": 0, "gateway.attempt.outcome": "won",
                                          "gateway.cost.cache_read_usd": 0.1}),
        span("chat m", 3, 1, "CLIENT", **{"gateway.attempt.index": 1, "gateway.attempt.outcome": "cancelled",
                                          "gateway.cost.cache_write_usd": 0.4, "gateway.cost_usd": 0.4,
                                          "gateway.hedge.expected_cost_usd": 0.45}),
        span("chat chat-warm-b", 4, None, "SERVER", **{"gateway.cost_usd": 0.3}),
        span("chat m", 5, 4, "CLIENT", **{"gateway.attempt.index": 0, "gateway.cost.cache_write_usd": 0.3}),
    ]))
    totals = read_trace_costs(path, "chat", warm_aliases=["chat-warm-b"])
    assert totals is not None and totals.parts is not None and totals.wasted_parts is not None
    assert totals.parts["cache_write"] == 0.4 and totals.parts["cache_read"] == 0.1  # the warm-up's apart
    assert totals.wasted_parts["cache_write"] == 0.4 and totals.warmup_usd == 0.3
    assert (totals.hedges, totals.hedge_expected_usd, totals.hedge_actual_usd) == (1, 0.45, 0.4)
    base = {"requests": 1, "cost": {**totals.as_dict(), "parts": {"input": 0, "cache_read": 0.1,
                                                                   "cache_write": 0.0, "output": 0}}}
    policies: dict[str, dict[str, Any]] = {"off": base, "hedged": {"requests": 1, "cost": totals.as_dict()}}
    add_part_costs(policies, "off")
    assert policies["hedged"]["extra_cold_input_pct"] == 100.0  # all the extra is cache writes
    assert any(line.startswith("| hedged |") for line in render_parts(policies))
