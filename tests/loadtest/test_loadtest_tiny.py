"""End to end: the tiny scenario through real gateway processes, and a short overhead benchmark.

tiny.yaml's primary stalls 1.5 s on 30% of requests, so without hedging p90 is above 1.5 s; hedging after
100 ms to a steady secondary answers those in ~150 ms. The margin asserted (hedged p90 under half of the
unhedged) is far wider than run-to-run noise on a loaded machine.
"""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from loadtest.__main__ import SCENARIOS_DIR
from loadtest.overhead import TARGETS, run_overhead
from loadtest.runner import run_scenario
from loadtest.scenario import load_scenario
from loadtest.stats import PERCENTILES

POLICY_KEYS = {"route", "requests", "ok", "errors", "error_rate_pct", "errors_by_kind", "latency_ms", "ttft_ms",
               "upstream_requests", "extra_upstream_pct", "cancelled_upstream", "upstream", "winners",
               "multi_attempt_pct", "hedged_pct", "cost", "cost_from_counters", "cost_per_1k_requests_usd",
               "wasted_pct_of_cost", "extra_cost_pct", "extra_cost_basis", "send_lag_ms", "wall_s"}


def test_tiny_scenario_report_and_hedging_wins(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS_DIR / "tiny.yaml")
    stdout, progress = io.StringIO(), io.StringIO()
    report = run_scenario(scenario, tmp_path, plot=True, stdout=stdout, progress_stream=progress)

    # Files, and the JSON on disk is the report returned.
    assert {"report.md", "report.json", "plot.png"} <= {p.name for p in tmp_path.iterdir()}
    assert orjson.loads((tmp_path / "report.json").read_bytes()) == orjson.loads(orjson.dumps(report))
    assert (tmp_path / "report.md").read_text() == stdout.getvalue().rstrip("\n") + "\n"
    assert "[no-hedge] sent" in progress.getvalue()

    # Shape: every policy present, with every figure, percentiles monotonic.
    assert {"scenario", "settings", "baseline", "cost_source", "policies"} <= set(report)
    policies = report["policies"]
    assert list(policies) == [p.name for p in scenario.policies]
    planned = report["settings"]["requests_planned"]
    assert planned > 30
    for name, p in policies.items():
        assert set(p) >= POLICY_KEYS, name
        assert p["requests"] == planned
        assert p["error_rate_pct"] <= 2.0, (name, p["errors_by_kind"])
        for key in ("latency_ms", "ttft_ms"):
            values = [p[key][label] for label, _ in PERCENTILES]
            assert all(v is not None for v in values), (name, key)
            assert values == sorted(values), (name, key, values)
        assert set(p["upstream"]) == {"primary", "secondary"}
        assert p["upstream_requests"] >= p["ok"]
        assert p["cost"]["total_usd"] > 0
        # Both cost sources price the same traffic: the outside estimate must agree with the gateway's spans.
        assert p["cost_from_counters"]["total_usd"] == pytest.approx(p["cost"]["total_usd"], rel=0.1)
        assert f"| {name} |" in stdout.getvalue()

    no_hedge, hedged = policies["no-hedge"], policies["hedge-100ms"]
    assert no_hedge["latency_ms"]["p90"] > 1000
    assert hedged["latency_ms"]["p90"] < 0.5 * no_hedge["latency_ms"]["p90"]
    assert hedged["extra_upstream_pct"] > no_hedge["extra_upstream_pct"]
    assert hedged["cancelled_upstream"] > 0  # the losers were cancelled at the provider
    assert no_hedge["extra_cost_pct"] == 0.0
    assert hedged["extra_cost_pct"] > 0
    assert hedged["cost"]["wasted_usd"] > 0


def test_overhead_benchmark_smoke(tmp_path: Path) -> None:
    """A very short run: the machinery works and every ratio is computed (the figures themselves are noise)."""
    report = run_overhead(tmp_path, rate=40, duration_s=0.6, concurrency=4, throughput_s=0.5, use_wrk=False,
                          stdout=io.StringIO(), progress_stream=io.StringIO())
    assert set(report["targets"]) == set(TARGETS)
    for name in TARGETS:
        target = report["targets"][name]
        assert target["errors"] == 0, name
        assert target["throughput"]["requests_per_s"] > 0, name
        assert target["latency_ms"]["p50"] <= target["latency_ms"]["p99"]
    assert all(value is not None for key, value in report["ratios"].items() if "throughput" in key)
    assert (tmp_path / "report.md").exists()
