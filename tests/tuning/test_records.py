"""Reading traces back: JSON lines and OTLP JSON give the same records; files join end to end; the per-target
model classifies every attempt (observed, censored, error), finds bursts and recovers prices."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from gateway.config.model import Price
from gateway.tuning.model import BURST_MIN, find_outages, fit_price, fit_targets, latency_samples, status_of
from gateway.tuning.records import RecordedAttempt, load_recording
from gateway.tuning.spans import read_span_file
from tests.tuning.synthetic import Target, Traffic, spans, to_otlp, write_jsonl

PRIMARY = Target("fast", "m1", "openai", lambda rng: rng.uniform(0.05, 0.5), Price(0.5, 1.5))
SECONDARY = Target("steady", "m2", "anthropic", lambda rng: rng.uniform(0.05, 0.1), Price(1.0, 4.0))


def attempt(outcome: str, *, ttft: float | None = None, duration: float = 1.0, error: str | None = None,
            status: int | None = None, tokens: tuple[int, int] = (100, 10), cost: float = 0.0) -> RecordedAttempt:
    return RecordedAttempt("p", "m", "openai", 0, "primary", outcome, 0.0, duration, ttft, tokens[0], tokens[1],
                           False, error, status, cost)


def test_jsonl_and_otlp_json_read_the_same(tmp_path: Path) -> None:
    items = spans(PRIMARY, SECONDARY, Traffic(n=50), seed=3)
    jsonl = load_recording([write_jsonl(tmp_path / "a.jsonl", items)])
    (tmp_path / "b.json").write_bytes(orjson.dumps(to_otlp(items), option=orjson.OPT_INDENT_2))  # pretty-printed
    (tmp_path / "c.jsonl").write_bytes(orjson.dumps(to_otlp(items[:40])) + b"\n" + orjson.dumps(to_otlp(items[40:])))
    for other in ("b.json", "c.jsonl"):
        otlp = load_recording([tmp_path / other])
        assert otlp.requests == jsonl.requests, other
    assert len(jsonl.requests) == 50
    r = jsonl.requests[0]
    assert r.alias == "chat" and r.attempts[0].provider == "fast" and r.attempts[0].kind == "openai"


def test_bad_lines_are_counted_and_requests_without_attempts_dropped(tmp_path: Path) -> None:
    items = spans(PRIMARY, SECONDARY, Traffic(n=5), seed=3)
    orphan_request = {**items[-1], "trace_id": "f" * 32, "span_id": "e" * 16}  # no attempt spans: a cache hit
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in [*items, orphan_request]) + b'{"cut in the midd')
    assert read_span_file(path).bad_lines == 1
    recording = load_recording([path])
    assert len(recording.requests) == 5 and recording.without_attempts == 1
    assert recording.files[0].bad_lines == 1


def test_files_are_joined_end_to_end(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", spans(PRIMARY, SECONDARY, Traffic(n=100, rate=50), seed=1))
    b = write_jsonl(tmp_path / "b.jsonl", spans(PRIMARY, SECONDARY, Traffic(n=100, rate=50), seed=2))
    one, both = load_recording([a]), load_recording([a, b])
    assert len(both.requests) == 200
    assert both.files[0].span_s == pytest.approx(one.span_s)
    # The second file starts where the first ends, whatever wall-clock gap was between them.
    second = [r.at_s for r in both.requests[100:]]
    assert min(second) == pytest.approx(one.span_s)
    assert both.span_s == pytest.approx(one.span_s + both.files[1].span_s)
    assert 190 / 50 < both.span_s < 210 / 50 * 1.2


def test_each_attempt_says_what_it_can() -> None:
    ttft, duration = latency_samples([
        attempt("won", ttft=0.2, duration=0.5),  # observed first token and complete answer
        attempt("cancelled", duration=0.3),  # a loser cut before its first token: both censored at 0.3
        attempt("cancelled", ttft=0.1, duration=0.4),  # cut after its first token (a non-stream race)
        attempt("failed", duration=30.0, error="timeout"),  # the provider took longer than the timeout
        attempt("failed", duration=0.01, error="http_503"),  # an error: no latency at all
        attempt("failed", ttft=0.15, duration=0.2, error="incomplete_stream"),  # first token, then broke
    ])
    assert [(s.value, s.observed) for s in ttft] == [(0.2, True), (0.3, False), (0.1, True), (30.0, False),
                                                     (0.15, True)]
    assert [(s.value, s.observed) for s in duration] == [(0.5, True), (0.3, False), (0.4, False)]


def test_statuses_come_from_the_span_or_the_error_type() -> None:
    assert status_of(attempt("failed", error="server_error", status=503)) == 503
    assert status_of(attempt("failed", error="http_502")) == 502
    assert status_of(attempt("failed", error="overloaded_error")) == 529
    assert status_of(attempt("failed", error="rate_limit_error")) == 429
    assert status_of(attempt("failed", error="server_error")) == 500


def test_bursts_of_failures_are_outage_windows_and_the_rest_is_background() -> None:
    ok, bad = attempt("won", ttft=0.1), attempt("failed", duration=0.01, error="http_503")
    timeline = [(1.0, ok), (2.0, bad), (3.0, ok),  # one isolated failure: background
                (4.0, ok), *[(5.0 + i, bad) for i in range(BURST_MIN + 1)], (12.0, ok)]
    windows = find_outages(timeline)
    assert len(windows) == 1
    w = windows[0]
    # From midway between the last success and the first failure, to midway between the last failure and
    # the next success.
    assert (w.start_s, w.end_s, w.status, w.failures) == (4.5, 4.5 + BURST_MIN + 2.5, 503, BURST_MIN + 1)
    assert find_outages([(1.0, ok), *[(2.0 + i, bad) for i in range(BURST_MIN - 1)], (9.0, ok)]) == []


def test_prices_are_recovered_from_the_attempts_costs() -> None:
    rng = random.Random(1)
    price = Price(0.8, 4.0)
    attempts = [attempt("won", tokens=(i, o), cost=price.cost_usd(i, o))
                for i, o in ((rng.randint(10, 900), rng.randint(0, 50)) for _ in range(40))]
    assert fit_price(attempts) == price


def test_fit_targets_orders_the_route_and_counts_errors(tmp_path: Path) -> None:
    flaky = Target("fast", "m1", "openai", lambda rng: rng.uniform(0.05, 0.5), Price(0.5, 1.5), error_rate=0.05,
                   outage=(20.0, 25.0))
    recording = load_recording([write_jsonl(tmp_path / "t.jsonl", spans(flaky, SECONDARY, Traffic(n=1500, rate=40)))])
    primary, secondary = fit_targets(recording.requests)
    assert (primary.provider, primary.index, secondary.provider, secondary.index) == ("fast", 0, "steady", 1)
    assert primary.error_rate == pytest.approx(0.05, abs=0.015)
    assert primary.errors["http_503"] > 0.05 * 1500
    assert len(primary.outages) == 1
    assert primary.outages[0].start_s == pytest.approx(20.0, abs=0.3)
    assert primary.outages[0].end_s == pytest.approx(25.0, abs=0.3)
    assert primary.price == Price(0.5, 1.5) and secondary.price == Price(1.0, 4.0)
    assert secondary.kind == "anthropic" and primary.gap_s == pytest.approx(0.005, rel=0.01)


def test_a_broken_stream_counts_as_a_midstream_failure(tmp_path: Path) -> None:
    from gateway.tuning.records import RecordedRequest
    from gateway.tuning.world import build_world

    broken = RecordedAttempt("p", "m", "openai", 0, "primary", "won", 0.0, 0.4, 0.1, 100, 3, False,
                             "incomplete_stream", None, 0.0)
    fine = RecordedAttempt("p", "m", "openai", 0, "primary", "won", 0.0, 0.3, 0.1, 100, 10, False, None, None, 0.0)
    requests = [RecordedRequest("chat", float(i), i, "openai", True, 200, 0.3, 0.1, False, 0.0,
                                (broken if i % 4 == 0 else fine,)) for i in range(40)]
    (model,) = fit_targets(requests)
    assert model.midstream_rate == pytest.approx(0.25)
    world = build_world(requests, [model], seed=1)
    assert [w.draws[0].midstream for w in world[:4]] == [True, False, False, False]
