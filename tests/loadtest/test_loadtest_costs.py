"""Costs from the gateway's trace file (read defensively), and the fallback from the simulators' counters."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.config.model import Price
from loadtest.client import RequestResult
from loadtest.costs import COUNTERS, TELEMETRY, counter_costs, read_trace_costs
from loadtest.report import add_relative_costs
from loadtest.spec import ProviderSpec


def _span(name: str, **attrs: object) -> bytes:
    return orjson.dumps({"name": name, "kind": "SERVER", "attributes": attrs})


def test_trace_costs_sum_request_spans_and_skip_everything_else(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"\n".join([
        _span("chat chat", **{"gateway.cost_usd": 0.003, "gateway.wasted_cost_usd": 0.001, "gateway.hedged": True}),
        _span("chat chat", **{"gateway.cost_usd": 0.002, "gateway.wasted_cost_usd": 0, "gateway.hedged": False}),
        # An attempt span whose model happens to equal the alias: not a request.
        orjson.dumps({"name": "chat chat", "kind": "CLIENT", "attributes": {"gateway.cost_usd": 9.0}}),
        _span("chat chat", **{"gateway.attempt.index": 1, "gateway.cost_usd": 9.0}),
        _span("chat other", **{"gateway.cost_usd": 9.0}),  # another alias
        _span("chat chat", **{"gateway.cost_usd": "lots"}),  # not a number
        b"not json",
        b"[1, 2, 3]",
        b'{"name": "chat chat", "attributes": {"gateway.cost_usd": 0.00',  # cut off mid-write
        # OTLP-style attribute list
        orjson.dumps({"name": "chat chat", "attributes": [{"key": "gateway.cost_usd", "value": {"doubleValue": 0.005}},
                                                          {"key": "gateway.hedged", "value": {"boolValue": True}}]}),
    ]))
    totals = read_trace_costs(path, "chat")
    assert totals is not None
    assert totals.source == TELEMETRY
    assert totals.spans == 3
    assert totals.total_usd == pytest.approx(0.010)
    assert totals.wasted_usd == pytest.approx(0.001)
    assert totals.winners_usd == pytest.approx(0.009)
    assert totals.hedged_requests == 2


def test_no_trace_file_or_no_request_spans_means_no_telemetry(tmp_path: Path) -> None:
    assert read_trace_costs(tmp_path / "absent.jsonl", "chat") is None
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(_span("chat other", **{"gateway.cost_usd": 1.0}))
    assert read_trace_costs(empty, "chat") is None


def _provider(name: str, price: Price) -> ProviderSpec:
    return ProviderSpec(name=name, kind="openai", model="m", price=price, profile={}, seed=1, gateway={})


def test_counter_costs() -> None:
    providers = [_provider("a", Price(1.0, 10.0)), _provider("b", Price(2.0, 20.0))]
    upstream = {"a": {"received": 4, "completed": 2, "disconnected": 1, "errors": 1, "tokens_sent": 30},
                "b": {"received": 1, "completed": 1, "disconnected": 0, "errors": 0, "tokens_sent": 10}}
    results = [RequestResult(index=i, door="openai", stream=False, scheduled_s=0.0, provider=p, input_tokens=100,
                             output_tokens=10) for i, p in enumerate(["a", "a", "b"])]
    results.append(RequestResult(index=3, door="openai", stream=False, scheduled_s=0.0, error="http 500",
                                 input_tokens=100))
    totals = counter_costs(providers, upstream, results)
    assert totals.source == COUNTERS
    # a: 3 billed prompts of 100 tokens at $1/M + 30 tokens at $10/M; b: 1 prompt at $2/M + 10 tokens at $20/M.
    assert totals.total_usd == pytest.approx((300 * 1 + 30 * 10 + 100 * 2 + 10 * 20) / 1e6)
    # Winners: two answers from a, one from b; the failed request won nothing.
    assert totals.winners_usd == pytest.approx((2 * (100 * 1 + 10 * 10) + (100 * 2 + 10 * 20)) / 1e6)
    assert totals.wasted_usd == pytest.approx(totals.total_usd - totals.winners_usd)


def test_extra_cost_against_the_baseline_or_the_winners() -> None:
    def summary(total: float, wasted: float) -> dict[str, object]:
        return {"cost": {"total_usd": total, "wasted_usd": wasted, "winners_usd": total - wasted},
                "cost_per_1k_requests_usd": total, "extra_cost_pct": None, "extra_cost_basis": None}

    policies = {"off": summary(1.0, 0.0), "hedged": summary(1.25, 0.2)}
    add_relative_costs(policies, "off")
    assert policies["hedged"]["extra_cost_pct"] == 25.0
    assert policies["off"]["extra_cost_pct"] == 0.0
    assert policies["hedged"]["extra_cost_basis"] == "vs off"
    without_baseline = {"off": summary(1.0, 0.0), "hedged": summary(1.25, 0.2)}
    add_relative_costs(without_baseline, None)
    assert without_baseline["hedged"]["extra_cost_pct"] == pytest.approx(100 * 0.2 / 1.05, abs=1e-3)
    assert without_baseline["hedged"]["extra_cost_basis"] == "vs winners"
