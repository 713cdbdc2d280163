"""The hedging rules, exactly, in virtual time (looptime): every `asyncio.sleep` is instant but counted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.config.model import GatewayConfig, HedgeConfig, ModelRoute, Price, ProviderConfig, ServerConfig, Target
from gateway.engine import (
    Completed,
    Engine,
    Launch,
    Outcome,
    RequestRecord,
    RequestSummary,
    Runtime,
    StreamBroken,
    StreamingWinner,
)
from gateway.errors import FailureKind, GatewayError, ProviderError
from gateway.policies.breaker import BreakerOptions, BreakerState
from gateway.policies.budget import BudgetOptions
from gateway.policies.bulkhead import BulkheadOptions
from gateway.policies.latency import AdaptiveDelayOptions
from gateway.wire import SSEEvent, WireFormat
from tests.engine.fakes import FakeProvider, Plan

pytestmark = pytest.mark.looptime

BODY: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
FAULT = ProviderError(FailureKind.FAULT, "p: HTTP 500: boom", status=500, error_type="api_error")


def runtime(*fakes: FakeProvider, hedge: HedgeConfig | None = None, fail_max: int = 5,
            reset_s: float = 30.0, timeout_s: float = 30.0, max_concurrent: int | None = None) -> Runtime:
    providers = {f.name: ProviderConfig(name=f.name, kind=WireFormat.OPENAI, base_url="http://127.0.0.1:9/v1",
                                        timeout_s=timeout_s, breaker=BreakerOptions(fail_max, reset_s),
                                        bulkhead=BulkheadOptions(max_concurrent))
                 for f in fakes}
    route = ModelRoute(alias="chat", targets=tuple(Target(f.name, f"model-{f.name}", Price(1.0, 2.0))
                                                   for f in fakes),
                       hedge=hedge or HedgeConfig(delay_ms=400, max_attempts=2,
                                                  budget=BudgetOptions(percent=100)))
    config = GatewayConfig(server=ServerConfig(), providers=providers, models={"chat": route})
    return Runtime(config, providers={f.name: f for f in fakes}, clock=asyncio.get_running_loop().time)


@dataclass
class Streamed:
    winner: StreamingWinner
    batches: list[list[SSEEvent]]


def new_record(rt: Runtime, *, stream: bool = False) -> RequestRecord:
    route = rt.config.models["chat"]
    return RequestRecord(request_id=1, door=WireFormat.OPENAI, started=asyncio.get_running_loop().time(),
                         trace_id=1, route=route, alias=route.alias, stream=stream)


async def run(rt: Runtime, *, stream: bool = False, deadline_s: float = 60.0) -> tuple[RequestSummary, Any]:
    """One request through the engine; a streamed winner is read to its end (its batches kept in `.batches`)."""
    loop = asyncio.get_running_loop()
    record = new_record(rt, stream=stream)
    error: Exception | None = None
    async with asyncio.TaskGroup() as tg:
        try:  # inside the group: TaskGroup would wrap an exception from its body in an ExceptionGroup
            result = await Engine(rt).run(record, {**BODY, "stream": stream}, tg, loop.time() + deadline_s)
            if isinstance(result, StreamingWinner):
                async with result:
                    result = Streamed(result, [batch async for batch in result])
        except (GatewayError, ProviderError) as exc:
            error = exc
    if error is not None:
        raise error
    return record.summary(loop.time()), result


def text_of(result: Completed) -> str:
    return str(result.body["choices"][0]["message"]["content"])


async def test_fast_primary_is_never_hedged() -> None:
    a, b = FakeProvider("a", Plan(ttft_s=0.1)), FakeProvider("b")
    record, result = await run(runtime(a, b))
    assert isinstance(result, Completed) and text_of(result).startswith("a-0")
    assert len(a.calls) == 1 and b.calls == []
    assert [x.outcome for x in record.attempts] == [Outcome.WON]
    assert not record.hedged


async def test_slow_primary_is_hedged_exactly_at_the_delay_and_cancelled() -> None:
    a, b = FakeProvider("a", Plan(ttft_s=5.0)), FakeProvider("b", Plan(ttft_s=0.1))
    record, result = await run(runtime(a, b))
    assert text_of(result).startswith("b-0")
    assert b.calls[0].started - a.calls[0].started == pytest.approx(0.4)  # not before the delay
    assert a.calls[0].cancelled and not a.calls[0].completed
    assert a.calls[0].ended - a.calls[0].started == pytest.approx(0.5)  # cut the moment b won
    assert [(x.launch, x.outcome) for x in record.attempts] == [
        (Launch.PRIMARY, Outcome.CANCELLED), (Launch.HEDGE, Outcome.WON)]
    assert record.hedged and record.winner is record.attempts[1]


async def test_error_launches_the_fallback_at_once() -> None:
    a = FakeProvider("a", Plan(ttft_s=0.05, error=FAULT))
    b = FakeProvider("b", Plan(ttft_s=0.1))
    record, result = await run(runtime(a, b))
    assert text_of(result).startswith("b-0")
    assert b.calls[0].started - a.calls[0].started == pytest.approx(0.05)
    assert [(x.launch, x.outcome) for x in record.attempts] == [
        (Launch.PRIMARY, Outcome.FAILED), (Launch.FALLBACK, Outcome.WON)]


async def test_failover_only_still_falls_through_on_errors() -> None:
    a = FakeProvider("a", Plan(ttft_s=3.0, error=FAULT))
    b = FakeProvider("b", Plan(ttft_s=0.1))
    _, result = await run(runtime(a, b, hedge=HedgeConfig(max_attempts=1)))
    assert text_of(result).startswith("b-0")
    assert b.calls[0].started - a.calls[0].started == pytest.approx(3.0)  # never hedged, only failed over


async def test_client_error_is_returned_as_is_and_not_hedged() -> None:
    bad = ProviderError(FailureKind.CLIENT, "a: HTTP 400: max_tokens too large", status=400,
                        error_type="invalid_request_error")
    a, b = FakeProvider("a", Plan(ttft_s=0.01, error=bad)), FakeProvider("b")
    rt = runtime(a, b)
    with pytest.raises(GatewayError) as info:
        await run(rt)
    assert info.value.status == 400 and "max_tokens too large" in info.value.message
    assert info.value.type == "invalid_request_error"
    assert b.calls == []
    assert rt.breakers["a"].consecutive_failures == 0  # a client error says nothing of the provider


async def test_rate_limited_target_is_skipped_for_its_retry_after() -> None:
    limited = ProviderError(FailureKind.RATE_LIMITED, "a: HTTP 429", status=429, retry_after_s=2.0)
    a = FakeProvider("a", [Plan(ttft_s=0.01, error=limited), Plan(ttft_s=0.01)])
    b = FakeProvider("b", Plan(ttft_s=0.01))
    rt = runtime(a, b)
    _, first = await run(rt)
    assert text_of(first).startswith("b-0")
    record, second = await run(rt)  # a is cooling down: skipped without a call
    assert len(a.calls) == 1 and text_of(second).startswith("b-0")
    assert record.attempts[0].outcome is Outcome.SKIPPED and record.attempts[0].skip_reason == "rate_limited"
    await asyncio.sleep(2.0)
    _, third = await run(rt)
    assert len(a.calls) == 2 and text_of(third).startswith("a-0")


async def test_every_attempt_failing_gives_one_error_naming_every_cause() -> None:
    a = FakeProvider("a", Plan(ttft_s=0.01, error=FAULT))
    b = FakeProvider("b", Plan(ttft_s=0.01, error=ProviderError(FailureKind.FAULT, "b: connection failed",
                                                                 error_type="connection_error")))
    with pytest.raises(GatewayError) as info:
        await run(runtime(a, b))
    assert info.value.status == 502
    assert "a/model-a: p: HTTP 500: boom" in info.value.message
    assert "b/model-b: b: connection failed" in info.value.message


async def test_all_rate_limited_is_429_and_all_overloaded_is_503() -> None:
    limited = ProviderError(FailureKind.RATE_LIMITED, "HTTP 429", status=429, retry_after_s=1)
    with pytest.raises(GatewayError) as info:
        await run(runtime(FakeProvider("a", Plan(ttft_s=0, error=limited)),
                          FakeProvider("b", Plan(ttft_s=0, error=limited))))
    assert info.value.status == 429
    overloaded = ProviderError(FailureKind.FAULT, "HTTP 529", status=529)
    with pytest.raises(GatewayError) as info:
        await run(runtime(FakeProvider("a", Plan(ttft_s=0, error=overloaded)),
                          FakeProvider("b", Plan(ttft_s=0, error=overloaded))))
    assert info.value.status == 503


async def test_max_attempts_caps_timer_launches() -> None:
    fakes = [FakeProvider(n, Plan(ttft_s=10.0)) for n in "abc"]
    record, _ = await run(runtime(*fakes, hedge=HedgeConfig(delay_ms=100, max_attempts=2,
                                                           budget=BudgetOptions(percent=100))))
    assert len(fakes[2].calls) == 0 and len(record.attempts) == 2
    fakes = [FakeProvider(n, Plan(ttft_s=10.0 - i)) for i, n in enumerate("abc")]
    record, _ = await run(runtime(*fakes, hedge=HedgeConfig(delay_ms=100, max_attempts=3,
                                                           budget=BudgetOptions(percent=100))))
    assert [round(f.calls[0].started - fakes[0].calls[0].started, 6) for f in fakes] == [0, 0.1, 0.2]
    assert record.winner is not None and record.winner.provider == "c"


async def test_delay_zero_races_all_at_once() -> None:
    fakes = [FakeProvider("a", Plan(ttft_s=0.3)), FakeProvider("b", Plan(ttft_s=0.2))]
    _, result = await run(runtime(*fakes, hedge=HedgeConfig(delay_ms=0, max_attempts=2,
                                                                 budget=BudgetOptions(percent=100))))
    assert fakes[1].calls[0].started == fakes[0].calls[0].started
    assert text_of(result).startswith("b-0") and fakes[0].calls[0].cancelled


async def test_budget_skips_hedges_instead_of_queueing() -> None:
    a, b = FakeProvider("a", Plan(ttft_s=1.0)), FakeProvider("b", Plan(ttft_s=0.1))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=100, max_attempts=2, rearm=False,
                                         budget=BudgetOptions(percent=0, min_per_window=1)))
    first, _ = await run(rt)
    second, result = await run(rt)
    assert first.hedged and not second.hedged
    assert second.hedges_skipped == 1 and text_of(result).startswith("a-0")
    assert len(b.calls) == 1


async def test_a_refused_hedge_is_rearmed_after_doubling_intervals_and_goes_when_the_budget_has_room() -> None:
    a, b = FakeProvider("a", Plan(ttft_s=5.0)), FakeProvider("b", Plan(ttft_s=0.1))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=100, max_attempts=2,
                                         budget=BudgetOptions(percent=0, min_per_window=1, window_s=1.0)))

    async def later() -> Any:
        await asyncio.sleep(0.5)
        return await run(rt)

    (first, _), (second, result) = await asyncio.gather(run(rt), later())
    assert first.hedged and b.calls[0].started == pytest.approx(0.1)
    # Checked when its wait reaches 1, 2, 4 and 8 delays: refused at 0.6, 0.7 and 0.9 (the first hedge is still
    # in the 1 s window), sent at 1.3, when it has left the window.
    assert second.hedges_skipped == 3 and second.hedged
    assert b.calls[1].started == pytest.approx(1.3)
    assert text_of(result).startswith("b-0")


async def test_open_breaker_skips_the_target_at_once_and_probes_after_reset() -> None:
    a = FakeProvider("a", [Plan(ttft_s=0.01, error=FAULT)] * 2 + [Plan(ttft_s=0.01)])
    b = FakeProvider("b", Plan(ttft_s=0.01))
    rt = runtime(a, b, fail_max=2, reset_s=5.0)
    for _ in range(2):
        await run(rt)
    assert rt.breakers["a"].state is BreakerState.OPEN
    record, result = await run(rt)
    assert len(a.calls) == 2 and text_of(result).startswith("b-0")
    assert record.attempts[0].skip_reason == "breaker_open"
    await asyncio.sleep(5.0)
    _, result = await run(rt)  # the probe succeeds and closes the breaker
    assert text_of(result).startswith("a-0") and rt.breakers["a"].state is BreakerState.CLOSED


async def test_cancelled_losers_never_open_a_breaker() -> None:
    a, b = FakeProvider("a", Plan(ttft_s=5.0)), FakeProvider("b", Plan(ttft_s=0.01))
    rt = runtime(a, b, fail_max=1)
    for _ in range(10):
        await run(rt)
    assert sum(c.cancelled for c in a.calls) == 10
    assert rt.breakers["a"].state is BreakerState.CLOSED


async def test_stream_commits_on_first_content_not_on_role_chunk() -> None:
    # a sends its role chunk at once but its first token late: that must not commit the stream to a.
    a = FakeProvider("a", Plan(ttft_s=2.0, role_first=True))
    b = FakeProvider("b", Plan(ttft_s=0.2))
    record, result = await run(runtime(a, b), stream=True)
    assert isinstance(result, Streamed) and result.winner.target.provider == "b"
    assert a.calls[0].cancelled
    assert record.ttft_s == pytest.approx(0.6)
    contents = [c["delta"].get("content") for ev in result.batches[0] for c in ev.data.get("choices", [])]
    assert "b-0 " in contents


async def test_stream_stall_before_first_token_is_hedged_and_mid_stream_error_is_not() -> None:
    a = FakeProvider("a", Plan(ttft_s=0.1, tokens=5, error=FAULT, error_after_tokens=2))
    b = FakeProvider("b", Plan(ttft_s=0.1))
    with pytest.raises(StreamBroken):
        await run(runtime(a, b), stream=True)
    assert b.calls == []  # committed to a at its first token: no silent switch mid-stream


async def test_adaptive_delay_follows_the_primary_latency_quantile() -> None:
    adaptive = AdaptiveDelayOptions(quantile=0.9, min_delay_ms=10, max_delay_ms=5000, min_samples=5,
                                    fallback_ms=1000)
    a, b = FakeProvider("a", Plan(ttft_s=0.2)), FakeProvider("b", Plan(ttft_s=0.01))
    rt = runtime(a, b, hedge=HedgeConfig(max_attempts=2, delay_ms=1000, adaptive=adaptive,
                                         budget=BudgetOptions(percent=100)))
    first, _ = await run(rt)
    assert first.hedge_delay_s == pytest.approx(1.0)  # the fallback until min_samples
    for _ in range(4):  # five samples in all
        await run(rt)
    assert b.calls == []  # a always answered within the fallback delay
    later, _ = await run(rt)
    assert later.hedge_delay_s == pytest.approx(0.2)


async def test_the_first_hedge_waits_out_the_delay_the_window_has_learned_meanwhile() -> None:
    """A young window says little when a request starts (at start every request in flight had the fallback): when
    its hedge would go, the delay as it stands then decides, counted from the request's start."""
    adaptive = AdaptiveDelayOptions(quantile=0.9, min_delay_ms=10, max_delay_ms=5000, min_samples=5,
                                    fallback_ms=1000)
    a, b = FakeProvider("a", Plan(ttft_s=0.3)), FakeProvider("b", Plan(ttft_s=0.01))
    rt = runtime(a, b, hedge=HedgeConfig(max_attempts=2, delay_ms=1000, adaptive=adaptive,
                                         budget=BudgetOptions(percent=100)))
    target = rt.config.models["chat"].targets[0]
    assert rt.tracker(rt.config.models["chat"], target, False) is not None
    for _ in range(5):
        rt.record_latency(target, False, 0.1)

    async def slower_answers_arrive() -> None:
        await asyncio.sleep(0.05)
        for _ in range(5):  # the window's p90 is now 0.4 s
            rt.record_latency(target, False, 0.4)

    (record, result), _ = await asyncio.gather(run(rt), slower_answers_arrive())
    assert b.calls == [] and not record.hedged  # not hedged at 0.1 s: a answered at 0.3 s, within 0.4 s
    assert record.hedge_delay_s == pytest.approx(0.4)
    assert text_of(result).startswith("a-0")


async def test_a_delay_that_shrank_meanwhile_does_not_hold_the_hedge_back() -> None:
    adaptive = AdaptiveDelayOptions(quantile=0.9, min_delay_ms=10, max_delay_ms=5000, min_samples=5,
                                    fallback_ms=1000)
    a, b = FakeProvider("a", Plan(ttft_s=5.0)), FakeProvider("b", Plan(ttft_s=0.01))
    rt = runtime(a, b, hedge=HedgeConfig(max_attempts=2, delay_ms=1000, adaptive=adaptive,
                                         budget=BudgetOptions(percent=100)))

    async def fast_answers_arrive() -> None:
        await asyncio.sleep(0.05)
        for _ in range(5):
            rt.record_latency(rt.config.models["chat"].targets[0], False, 0.1)

    (record, _), _ = await asyncio.gather(run(rt), fast_answers_arrive())
    assert record.hedged and b.calls[0].started == pytest.approx(1.0)  # the fallback it started with, no later
    assert record.hedge_delay_s == pytest.approx(1.0)


async def test_deadline_cancels_everything_with_504() -> None:
    a, b = FakeProvider("a", Plan(ttft_s=10.0)), FakeProvider("b", Plan(ttft_s=10.0))
    with pytest.raises(GatewayError) as info:
        await run(runtime(a, b), deadline_s=1.0)
    assert info.value.status == 504
    assert all(c.cancelled for c in a.calls + b.calls)


async def test_per_attempt_timeout_is_a_fault_that_falls_through() -> None:
    a = FakeProvider("a", Plan(ttft_s=10.0))
    b = FakeProvider("b", Plan(ttft_s=0.1))
    rt = runtime(a, b, hedge=HedgeConfig(max_attempts=1), timeout_s=2.0)
    record, result = await run(rt)
    assert text_of(result).startswith("b-0")
    assert record.attempts[0].error is not None and record.attempts[0].error.error_type == "timeout"
    assert rt.breakers["a"].consecutive_failures == 1


async def test_costs_count_winner_and_loser() -> None:
    a = FakeProvider("a", Plan(ttft_s=0.3, tokens=4, per_token_s=1.0))  # streams 1 token, then is cut
    b = FakeProvider("b", Plan(ttft_s=0.45, tokens=2))
    record, _ = await run(runtime(a, b, hedge=HedgeConfig(delay_ms=100, budget=BudgetOptions(percent=100))))
    loser, winner = record.attempts
    assert winner.provider == "b" and winner.output_tokens == 2 and winner.input_tokens == 10
    assert loser.outcome is Outcome.CANCELLED and loser.output_tokens is None and loser.streamed_chars > 0
    assert loser.usage_estimated and loser.billed_output_tokens == 1
    assert loser.cost_usd > 0 and record.wasted_cost_usd == pytest.approx(loser.cost_usd)
    assert record.cost_usd == pytest.approx(loser.cost_usd + winner.cost_usd)


async def test_request_a_provider_cannot_express_is_a_400_naming_the_field() -> None:
    a = FakeProvider("a")
    a.kind = WireFormat.ANTHROPIC  # the OpenAI request below asks for n=2, which Anthropic cannot do
    rt = runtime(a)
    loop = asyncio.get_running_loop()
    record = new_record(rt)
    async with asyncio.TaskGroup() as tg:
        with pytest.raises(GatewayError) as info:
            await Engine(rt).run(record, {**BODY, "n": 2}, tg, loop.time() + 10)
    assert info.value.status == 400 and info.value.param == "n"
    assert a.calls == [] and record.attempts[0].skip_reason == "unsupported_request"


async def test_bulkhead_queues_primaries_and_skips_hedges_that_would_wait() -> None:
    a = FakeProvider("a", Plan(ttft_s=1.0))
    b = FakeProvider("b", Plan(ttft_s=3.0))
    rt = runtime(a, b, hedge=HedgeConfig(delay_ms=100, budget=BudgetOptions(percent=100)), max_concurrent=1)
    (first, _), (second, _) = await asyncio.gather(run(rt), run(rt))
    # b's one slot went to the first request's hedge; the second request's hedge was skipped, not queued.
    assert [x.outcome for x in first.attempts] == [Outcome.WON, Outcome.CANCELLED]
    assert second.attempts[1].skip_reason == "provider_busy"
    # the second primary waited for a's one slot: it started when the first primary finished
    assert second.attempts[0].queue_wait_s == pytest.approx(1.0)
    assert a.calls[1].started - a.calls[0].started == pytest.approx(1.0)
    assert all(bh.in_use == 0 for bh in rt.bulkheads.values())
