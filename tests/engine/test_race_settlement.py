"""Every attempt is settled exactly once, whatever ends it: regressions of faults found by attacking the engine."""

from __future__ import annotations

import pytest

from gateway.config.model import HedgeConfig
from gateway.engine import Launch, Outcome
from gateway.errors import FailureKind, ProviderError
from gateway.policies.budget import BudgetOptions
from gateway.policies.latency import AdaptiveDelayOptions
from tests.engine.fakes import FakeProvider, Plan
from tests.engine.test_race import Streamed, run, runtime

pytestmark = pytest.mark.looptime

FAULT = ProviderError(FailureKind.FAULT, "p: HTTP 500: boom", status=500, error_type="api_error")


async def test_two_streams_committing_in_the_same_tick_free_the_losers_slot() -> None:
    # Same time to first token and a hedge at once: both commit in one loop tick. The loser must be closed
    # (connection dropped) and its bulkhead slot freed, or the provider stays "busy" for every later hedge.
    a = FakeProvider("a", Plan(ttft_s=0.5, tokens=50, per_token_s=0.1))
    b = FakeProvider("b", Plan(ttft_s=0.5, tokens=50, per_token_s=0.1))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=0, max_attempts=2, budget=BudgetOptions(percent=100)),
                 max_concurrent=1)
    summary, result = await run(rt, stream=True)
    assert isinstance(result, Streamed)
    assert sorted(x.outcome for x in summary.attempts) == [Outcome.CANCELLED, Outcome.WON]
    assert rt.bulkheads["a"].in_use == 0 and rt.bulkheads["b"].in_use == 0
    loser = b if result.winner.target.provider == "a" else a
    assert loser.calls[0].cancelled and not loser.calls[0].completed


async def test_a_failure_finishing_in_the_winners_tick_counts_against_its_breaker() -> None:
    a = FakeProvider("a", Plan(ttft_s=0.5))
    b = FakeProvider("b", Plan(ttft_s=0.5, error=FAULT))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=0, max_attempts=2, budget=BudgetOptions(percent=100)))
    summary, _ = await run(rt)
    failed = next(x for x in summary.attempts if x.provider == "b")
    assert failed.outcome is Outcome.FAILED and failed.error is FAULT
    assert rt.breakers["b"].consecutive_failures == 1


async def test_requests_cut_by_their_deadline_do_not_teach_the_adaptive_delay() -> None:
    adaptive = AdaptiveDelayOptions(quantile=0.5, min_delay_ms=50, max_delay_ms=5000, min_samples=1,
                                    fallback_ms=300)
    a, b = FakeProvider("a", Plan(ttft_s=0.3)), FakeProvider("b", Plan(ttft_s=0.3))
    rt = runtime(a, b, hedge=HedgeConfig(max_attempts=2, adaptive=adaptive, budget=BudgetOptions(percent=100)))
    for _ in range(20):
        with pytest.raises(Exception, match="deadline"):
            await run(rt, deadline_s=0.01)
    tracker = rt.tracker(rt.config.models["chat"], rt.config.models["chat"].targets[0], False)
    assert tracker is not None and tracker.sample_count() == 0  # cut by the deadline: says nothing of latency
    assert rt.budgets["chat"].snapshot() == (20, 0)


async def test_a_hedge_that_finds_no_admissible_target_costs_no_budget() -> None:
    a = FakeProvider("a", Plan(ttft_s=1.0))
    b = FakeProvider("b", Plan(ttft_s=0.1))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=100, max_attempts=2, budget=BudgetOptions(percent=100)))
    rt.breakers["b"].force_open(60)
    summary, _ = await run(rt)
    assert [(x.launch, x.outcome) for x in summary.attempts] == [
        (Launch.PRIMARY, Outcome.WON), (Launch.HEDGE, Outcome.SKIPPED)]
    assert rt.budgets["chat"].snapshot() == (1, 0)  # one request, no hedge paid for


async def test_the_hedge_delay_follows_the_target_that_really_went_first() -> None:
    adaptive = AdaptiveDelayOptions(quantile=0.5, min_delay_ms=10, max_delay_ms=5000, min_samples=1,
                                    fallback_ms=1000)
    a, b, c = FakeProvider("a"), FakeProvider("b", Plan(ttft_s=0.2)), FakeProvider("c", Plan(ttft_s=0.1))
    rt = runtime(a, b, c, hedge=HedgeConfig(max_attempts=2, adaptive=adaptive, budget=BudgetOptions(percent=100)))
    route = rt.config.models["chat"]
    tracker_b = rt.tracker(route, route.targets[1], False)
    assert tracker_b is not None
    for _ in range(3):
        tracker_b.record(0.05)  # b answers in 50 ms; a's window is empty (its delay would be the 1 s fallback)
    rt.breakers["a"].force_open(60)
    summary, _ = await run(rt)
    assert summary.hedge_delay_s == pytest.approx(0.05)
    assert len(c.calls) == 1  # b took 200 ms, more than its usual 50 ms: hedged to c


def test_aliases_sharing_a_target_each_get_their_own_quantile_and_clamp() -> None:
    from gateway.clock import FakeClock
    from gateway.config.model import GatewayConfig, ModelRoute, Price, ProviderConfig, ServerConfig, Target
    from gateway.engine import Runtime
    from gateway.wire import WireFormat

    target = Target("a", "m", Price(1, 1))
    fast = AdaptiveDelayOptions(quantile=0.5, min_delay_ms=10, max_delay_ms=10_000, min_samples=1)
    clamped = AdaptiveDelayOptions(quantile=0.99, min_delay_ms=2000, max_delay_ms=5000, min_samples=1)
    routes = {name: ModelRoute(alias=name, targets=(target,), hedge=HedgeConfig(adaptive=options))
              for name, options in (("p50", fast), ("p99", clamped))}
    config = GatewayConfig(server=ServerConfig(), models=routes, providers={
        "a": ProviderConfig(name="a", kind=WireFormat.OPENAI, base_url="http://127.0.0.1:9/v1")})
    rt = Runtime(config, providers={"a": FakeProvider("a")}, clock=FakeClock())
    p50, p99 = rt.tracker(routes["p50"], target, False), rt.tracker(routes["p99"], target, False)
    assert p50 is not None and p99 is not None and p50 is not p99
    for latency in (0.1, 0.2, 0.3):
        rt.record_latency(target, False, latency)
    assert p50.delay_s() == pytest.approx(0.2)
    assert p99.delay_s() == pytest.approx(2.0)  # its own clamp, from the same samples

    # A reload that changes an alias's options gives it a new window with those options.
    wider = AdaptiveDelayOptions(quantile=0.99, min_delay_ms=10, max_delay_ms=5000, min_samples=1)
    reloaded = GatewayConfig(server=ServerConfig(), providers=config.providers, models={
        **routes, "p99": ModelRoute(alias="p99", targets=(target,), hedge=HedgeConfig(adaptive=wider))})
    rt2 = Runtime(reloaded, providers={"a": FakeProvider("a")}, clock=FakeClock(), previous=rt)
    again = rt2.tracker(reloaded.models["p99"], target, False)
    assert again is not None and again.options == wider
    rt2.record_latency(target, False, 0.3)
    assert again.delay_s() == pytest.approx(0.3)


@pytest.mark.parametrize("stream", [True, False])
async def test_endless_events_without_content_are_a_provider_fault_not_a_memory_leak(stream: bool) -> None:
    a = FakeProvider("a", Plan(endless_role_chunks=True))
    b = FakeProvider("b", Plan(ttft_s=0.1))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=10_000, budget=BudgetOptions(percent=100)))
    summary, _ = await run(rt, stream=stream)
    first = summary.attempts[0]
    assert first.outcome is Outcome.FAILED and first.error is not None
    assert first.error.error_type == "bad_response" and "without content" in first.error.message
    assert summary.winner is not None and summary.winner.provider == "b"  # fell back at once
    assert rt.breakers["a"].consecutive_failures == 1


async def test_a_hedge_whose_expected_cost_passes_the_dollar_ceiling_is_skipped() -> None:
    # Price 1 $/Mtok in, 2 $/Mtok out. The first hedge expects the default output (256 tokens): ~0.00053 $; the
    # winners then produce 300 tokens, so the next hedge expects ~0.00061 $: past a 0.001 $/hour ceiling.
    a = FakeProvider("a", Plan(ttft_s=1.0))
    b = FakeProvider("b", Plan(ttft_s=0.1, tokens=300))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=100, max_attempts=2, budget=BudgetOptions(percent=100),
                                         budget_usd_per_hour=0.001, rearm=False))
    hedged = [(await run(rt))[0].hedged for _ in range(3)]
    assert hedged == [True, False, False]
    assert len(b.calls) == 1
    assert rt.ceilings["chat"].spent_usd() <= 0.001


async def test_no_hedge_when_the_backup_usually_takes_longer_than_the_time_left() -> None:
    a = FakeProvider("a", Plan(ttft_s=3.0))
    b = FakeProvider("b", Plan(ttft_s=2.0))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=500, max_attempts=2, budget=BudgetOptions(percent=100)))
    route = rt.config.models["chat"]
    for _ in range(5):
        rt.record_latency(route.targets[1], False, 2.0)  # b usually answers in 2 s
    with pytest.raises(Exception, match="deadline"):
        await run(rt, deadline_s=2.2)  # at the 500 ms delay only 1.7 s are left: b cannot make it
    assert b.calls == []
