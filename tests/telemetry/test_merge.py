"""Merging the workers' Prometheus expositions: counters and histograms summed by series, gauges per worker."""

from __future__ import annotations

from gateway.telemetry.merge import merge_expositions, with_worker

FIRST = """# HELP gateway_attempts_total Attempts by launch reason and outcome.
# TYPE gateway_attempts_total counter
gateway_attempts_total{gen_ai_request_model="chat",gateway_attempt_outcome="won"} 3
gateway_attempts_total{gen_ai_request_model="odd } \\" label",gateway_attempt_outcome="won"} 1
# TYPE gateway_cost_usd_total counter
gateway_cost_usd_total{gen_ai_request_model="chat"} 0.25
# TYPE gateway_request_duration_seconds histogram
gateway_request_duration_seconds_bucket{gen_ai_request_model="chat",le="0.01"} 1
gateway_request_duration_seconds_bucket{gen_ai_request_model="chat",le="+Inf"} 3
gateway_request_duration_seconds_sum{gen_ai_request_model="chat"} 0.5
gateway_request_duration_seconds_count{gen_ai_request_model="chat"} 3
# HELP gateway_breaker_state Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.
# TYPE gateway_breaker_state gauge
gateway_breaker_state{gateway_provider="sim"} 2
"""

SECOND = """# HELP gateway_attempts_total Attempts by launch reason and outcome.
# TYPE gateway_attempts_total counter
gateway_attempts_total{gen_ai_request_model="chat",gateway_attempt_outcome="won"} 4
gateway_attempts_total{gen_ai_request_model="chat",gateway_attempt_outcome="cancelled"} 2
# TYPE gateway_request_duration_seconds histogram
gateway_request_duration_seconds_bucket{gen_ai_request_model="chat",le="0.01"} 0
gateway_request_duration_seconds_bucket{gen_ai_request_model="chat",le="+Inf"} 4
gateway_request_duration_seconds_sum{gen_ai_request_model="chat"} 1.5
gateway_request_duration_seconds_count{gen_ai_request_model="chat"} 4
# HELP gateway_breaker_state Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.
# TYPE gateway_breaker_state gauge
gateway_breaker_state{gateway_provider="sim"} 0
"""


def test_counters_and_histograms_are_summed_by_identical_series() -> None:
    merged = merge_expositions([("1", FIRST), ("2", SECOND)]).splitlines()
    assert 'gateway_attempts_total{gen_ai_request_model="chat",gateway_attempt_outcome="won"} 7' in merged
    assert 'gateway_attempts_total{gen_ai_request_model="chat",gateway_attempt_outcome="cancelled"} 2' in merged
    assert 'gateway_attempts_total{gen_ai_request_model="odd } \\" label",gateway_attempt_outcome="won"} 1' in merged
    assert 'gateway_cost_usd_total{gen_ai_request_model="chat"} 0.25' in merged  # only the first has it
    assert 'gateway_request_duration_seconds_bucket{gen_ai_request_model="chat",le="0.01"} 1' in merged
    assert 'gateway_request_duration_seconds_bucket{gen_ai_request_model="chat",le="+Inf"} 7' in merged
    assert 'gateway_request_duration_seconds_sum{gen_ai_request_model="chat"} 2.0' in merged
    assert 'gateway_request_duration_seconds_count{gen_ai_request_model="chat"} 7' in merged


def test_gauges_are_kept_per_worker() -> None:
    merged = merge_expositions([("1", FIRST), ("2", SECOND)]).splitlines()
    assert 'gateway_breaker_state{gateway_provider="sim",worker="1"} 2' in merged
    assert 'gateway_breaker_state{gateway_provider="sim",worker="2"} 0' in merged


def test_each_family_is_declared_once_before_its_samples() -> None:
    merged = merge_expositions([("1", FIRST), ("2", SECOND)]).splitlines()
    for family, kind in (("gateway_attempts_total", "counter"), ("gateway_request_duration_seconds", "histogram"),
                         ("gateway_breaker_state", "gauge")):
        assert merged.count(f"# TYPE {family} {kind}") == 1
        declared = merged.index(f"# TYPE {family} {kind}")
        samples = [i for i, line in enumerate(merged) if line.startswith(family) and not line.startswith("#")]
        assert samples and min(samples) > declared
    assert sum(line.startswith("# HELP gateway_attempts_total ") for line in merged) == 1


def test_one_worker_or_none() -> None:
    assert merge_expositions([("1", FIRST)]).count("worker=") == 1
    assert merge_expositions([]) == ""
    assert merge_expositions([("1", ""), ("2", "")]) == ""


def test_the_worker_label_is_added_to_any_series() -> None:
    assert with_worker("up", "2") == 'up{worker="2"}'
    assert with_worker("up{}", "2") == 'up{worker="2"}'
    assert with_worker('up{a="b"}', "2") == 'up{a="b",worker="2"}'
