"""The discrete-event race against hand-computed cases: every time and cost below is worked out by hand from
the engine's rules (README "How hedging works"), with the engine's own budget, tracker and breaker inside."""

from __future__ import annotations

import pytest

from gateway.config.model import HedgeConfig, Price
from gateway.errors import FailureKind
from gateway.policies.breaker import BreakerOptions
from gateway.policies.budget import BudgetOptions
from gateway.policies.latency import AdaptiveDelayOptions
from gateway.tuning.simulate import SimResult, SimSetup, SimTarget, simulate
from gateway.tuning.world import Draw, WorldRequest

PRIMARY = SimTarget("p", "m1", Price(1.0, 2.0), timeout_s=10.0, gap_s=0.01, breaker=BreakerOptions(5, 30.0))
SECONDARY = SimTarget("s", "m2", Price(3.0, 6.0), timeout_s=10.0, gap_s=0.01, breaker=BreakerOptions(5, 30.0))
THIRD = SimTarget("t", "m3", Price(1.0, 1.0), timeout_s=10.0, gap_s=0.01, breaker=BreakerOptions(5, 30.0))
GENEROUS = BudgetOptions(percent=100.0, window_s=10.0, min_per_window=100)


def ok(ttft: float, done: float | None = None) -> Draw:
    return Draw(ttft, done if done is not None else ttft + 0.1)


def err(at: float, kind: FailureKind = FailureKind.FAULT) -> Draw:
    return Draw(None, 0.0, fail_s=at, failure=kind, error_type="http_500")


def req(at: float, *draws: Draw, stream: bool = True, output: int = 11) -> WorldRequest:
    return WorldRequest(at, stream, input_tokens=1_000_000, input_estimate=1_000_000, output_tokens=output,
                        draws=tuple(draws))


def run(world: list[WorldRequest], *, delay_ms: float = 100.0, max_attempts: int = 2,
        budget: BudgetOptions = GENEROUS, adaptive: AdaptiveDelayOptions | None = None,
        targets: tuple[SimTarget, ...] = (PRIMARY, SECONDARY), deadline_s: float = 30.0,
        rearm: bool = True) -> list[SimResult]:
    hedge = HedgeConfig(max_attempts=max_attempts, delay_ms=delay_ms, adaptive=adaptive, budget=budget,
                        rearm=rearm)
    return simulate(SimSetup(targets, hedge, deadline_s), world)


def test_a_slow_primary_is_hedged_after_the_delay_and_the_loser_is_billed_its_input() -> None:
    (r,) = run([req(0.0, ok(0.300), ok(0.050))])
    # Hedge at 0.100, its first token at 0.150: the primary (no token yet) is cut then.
    assert r.ok and r.hedged and r.sent == 2
    assert r.ttft_s == pytest.approx(0.150)
    assert r.latency_s == pytest.approx(0.100 + 0.150)  # the secondary's whole answer: 0.05 + 0.1
    winner = 1.0 * 3 + 11 * 6 / 1_000_000  # a million input tokens at $3/M, 11 output at $6/M
    loser = 1.0 * 1  # input only: no token came before the cut
    assert r.cost_usd == pytest.approx(winner + loser)
    assert r.wasted_usd == pytest.approx(loser)


def test_a_fast_primary_wins_alone() -> None:
    (r,) = run([req(0.0, ok(0.080), ok(0.010))])
    assert r.ok and not r.hedged and r.sent == 1 and r.ttft_s == pytest.approx(0.080)
    assert r.wasted_usd == 0


def test_non_streams_commit_at_the_complete_answer() -> None:
    # The primary's first token at 0.05 but its answer at 0.40; the hedge (0.10) answers completely at 0.25.
    draws = (ok(0.050, 0.400), ok(0.100, 0.150))
    (streamed,) = run([req(0.0, *draws, stream=True)])
    (whole,) = run([req(0.0, *draws, stream=False)])
    assert streamed.ttft_s == pytest.approx(0.050) and not streamed.hedged
    assert whole.hedged and whole.latency_s == pytest.approx(0.250)
    # The cut primary had streamed 1 + floor((0.25 - 0.05) / 0.01) = 21 tokens, capped at the answer's 11.
    assert whole.wasted_usd == pytest.approx(1.0 + 11 * 2 / 1_000_000)


def test_the_budget_refuses_hedges_and_without_rearm_a_refused_hedge_is_not_retried() -> None:
    budget = BudgetOptions(percent=0.0, window_s=10.0, min_per_window=1)
    slow = (ok(0.500), ok(0.050))
    a, b, c = run([req(0.0, *slow), req(1.0, *slow), req(12.0, *slow)], budget=budget, rearm=False)
    assert a.hedged and a.ttft_s == pytest.approx(0.150)
    assert not b.hedged and b.hedges_skipped == 1 and b.ttft_s == pytest.approx(0.500)
    assert c.hedged  # the window (10 s) has moved past the first hedge


def test_a_refused_hedge_is_rearmed_after_doubling_intervals_as_the_engine_does() -> None:
    # tests/engine/test_race.py's case: refused at 0.6, 0.7 and 0.9 s, sent at 1.3 s once the first hedge has
    # left the 1 s window.
    budget = BudgetOptions(percent=0.0, window_s=1.0, min_per_window=1)
    slow = (ok(5.0), ok(0.1))
    first, second = run([req(0.0, *slow), req(0.5, *slow)], budget=budget)
    assert first.hedged and first.ttft_s == pytest.approx(0.2)
    assert second.hedged and second.hedges_skipped == 3
    assert second.ttft_s == pytest.approx(1.3 + 0.1 - 0.5)


def test_the_first_hedge_waits_out_the_delay_the_window_learned_while_the_request_waited() -> None:
    adaptive = AdaptiveDelayOptions(quantile=0.5, min_delay_ms=10, max_delay_ms=10_000, min_samples=3,
                                    fallback_ms=1000, window_s=60)
    fast = [req(0.0, ok(0.05), ok(0.05)) for _ in range(3)]  # the median is 50 ms
    slower = [req(0.84, ok(0.2), ok(5.0)) for _ in range(3)]  # at 1.04 s the median is 200 ms
    *_, late = run(fast + slower + [req(1.0, ok(0.15), ok(0.5))], delay_ms=1000, adaptive=adaptive)
    # started with a 50 ms delay; at 1.05 s the delay is 200 ms: no hedge at 1.05, its answer came at 1.15
    assert not late.hedged and late.sent == 1 and late.ttft_s == pytest.approx(0.15)


def test_a_failure_falls_back_at_once_outside_the_budget() -> None:
    budget = BudgetOptions(percent=0.0, window_s=10.0, min_per_window=0)  # no hedge allowed at all
    (r,) = run([req(0.0, err(0.020), ok(0.050))], budget=budget)
    assert r.ok and not r.hedged and r.sent == 2
    assert r.ttft_s == pytest.approx(0.070)
    assert r.cost_usd == pytest.approx(3.0 + 11 * 6 / 1_000_000)  # the HTTP error itself is not billed


def test_the_breaker_opens_after_fail_max_and_probes_after_its_reset_timeout() -> None:
    primary = SimTarget("p", "m1", Price(), 10.0, 0.01, BreakerOptions(fail_max=2, reset_timeout_s=5.0))
    world = [req(0.0, err(0.01), ok(0.05)), req(1.0, err(0.01), ok(0.05)),  # two failures: open at 1.01
             req(2.0, ok(0.02), ok(0.05)),  # open: the primary is skipped, the secondary goes first
             req(7.0, ok(0.02), ok(0.05))]  # 6.01 s later: half-open, one probe; it succeeds
    results = run(world, targets=(primary, SECONDARY))
    assert [r.sent for r in results] == [2, 2, 1, 1]
    assert results[2].ttft_s == pytest.approx(0.05)  # served by the secondary alone
    assert results[3].ttft_s == pytest.approx(0.02)  # the probe went to the primary, and won


def test_the_adaptive_delay_is_the_trackers_quantile_once_it_has_min_samples() -> None:
    adaptive = AdaptiveDelayOptions(quantile=0.5, min_delay_ms=10, max_delay_ms=10_000, min_samples=3,
                                    fallback_ms=1000, window_s=60)
    world = [req(0.0, ok(0.100), ok(0.01)), req(2.0, ok(0.200), ok(0.01)), req(4.0, ok(0.300), ok(0.01)),
             req(6.0, ok(0.900), ok(0.050))]
    *warmup, r = run(world, delay_ms=adaptive.fallback_ms, adaptive=adaptive)
    assert not any(w.hedged for w in warmup)  # the 1 s fallback until three samples
    # Nearest-rank median of 0.1, 0.2, 0.3 is 0.2: the hedge goes at 6.2 and answers at 6.25.
    assert r.hedged and r.ttft_s == pytest.approx(0.250)


def test_max_attempts_launches_one_hedge_per_delay() -> None:
    world = [req(0.0, ok(1.0), ok(1.0), ok(0.05))]
    (two,) = run(world, targets=(PRIMARY, SECONDARY, THIRD))
    (three,) = run(world, max_attempts=3, targets=(PRIMARY, SECONDARY, THIRD))
    assert two.sent == 2 and two.ttft_s == pytest.approx(1.0)
    assert three.sent == 3 and three.ttft_s == pytest.approx(0.200 + 0.05)


def test_racing_sends_everything_at_once() -> None:
    (r,) = run([req(0.0, ok(0.3), ok(0.1))], delay_ms=0)
    assert r.sent == 2 and r.ttft_s == pytest.approx(0.1)


def test_deadline_and_provider_timeout() -> None:
    (cut,) = run([req(0.0, ok(5.0), ok(5.0))], deadline_s=1.0)
    assert not cut.ok and cut.error == "deadline" and cut.cost_usd == pytest.approx(1.0 + 3.0)
    short = SimTarget("p", "m1", Price(), timeout_s=0.5, gap_s=0.01, breaker=BreakerOptions())
    (timed_out,) = run([req(0.0, ok(2.0), ok(0.2))], delay_ms=10_000, targets=(short, SECONDARY))
    assert timed_out.ok and timed_out.ttft_s == pytest.approx(0.5 + 0.2)  # fallback at the timeout


def test_429_cools_the_target_down_and_client_errors_end_the_request() -> None:
    world = [req(0.0, err(0.01, FailureKind.RATE_LIMITED), ok(0.05)), req(0.5, ok(0.01), ok(0.05)),
             req(2.0, ok(0.01), ok(0.05))]
    limited, cooling, later = run(world)
    assert limited.ok and limited.sent == 2
    assert cooling.sent == 1 and cooling.ttft_s == pytest.approx(0.05)  # primary skipped for 1 s
    assert later.ttft_s == pytest.approx(0.01)
    (bad,) = run([req(0.0, err(0.01, FailureKind.CLIENT), ok(0.05))])
    assert not bad.ok and bad.sent == 1


def test_a_stream_broken_after_its_first_token_fails_the_request() -> None:
    (r,) = run([req(0.0, Draw(0.05, 0.2, midstream=True), ok(0.5))])
    assert not r.ok and r.error == "stream error" and r.sent == 1
