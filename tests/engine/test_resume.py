"""Resuming a committed stream on the next target, in virtual time (looptime): splice, bounds, stalls, cut-offs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.config.model import GatewayConfig, HedgeConfig, ModelRoute, ProviderConfig, ServerConfig, Target
from gateway.engine import Engine, Launch, Outcome, RequestRecord, RequestSummary, Runtime, StreamBroken
from gateway.engine.resume import ResumingStream
from gateway.policies.budget import BudgetOptions
from gateway.wire import SSEEvent, WireFormat
from tests.engine.continuing import ANSWER, ContinuingProvider, Script

pytestmark = pytest.mark.looptime

OPENAI, ANTHROPIC = WireFormat.OPENAI, WireFormat.ANTHROPIC


def runtime(*fakes: ContinuingProvider, resume: int = 1, stall_ms: float | None = None,
            prefill: dict[str, str] | None = None, models: dict[str, str] | None = None,
            budget: BudgetOptions | None = None) -> Runtime:
    providers = {f.name: ProviderConfig(name=f.name, kind=f.kind, base_url="http://127.0.0.1:9", timeout_s=60,
                                        prefill=(prefill or {}).get(f.name)) for f in fakes}
    route = ModelRoute(alias="chat", targets=tuple(Target(f.name, (models or {}).get(f.name, f"model-{f.name}"))
                                                   for f in fakes),
                       hedge=HedgeConfig(delay_ms=400, max_attempts=1, budget=budget or BudgetOptions()),
                       stream_stall_ms=stall_ms, resume_max=resume)
    config = GatewayConfig(server=ServerConfig(), providers=providers, models={"chat": route})
    return Runtime(config, providers=dict((f.name, f) for f in fakes),  # type: ignore[misc]
                   clock=asyncio.get_running_loop().time)


@dataclass
class Read:
    summary: RequestSummary
    events: list[SSEEvent]
    broken: StreamBroken | None = None
    kinds: list[str] = field(default_factory=list)


def body_for(door: WireFormat, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if door is ANTHROPIC:
        base["max_tokens"] = 100
    return {**base, **extra}


async def read(rt: Runtime, door: WireFormat, **extra: Any) -> Read:
    loop = asyncio.get_running_loop()
    route = rt.config.models["chat"]
    record = RequestRecord(request_id=1, door=door, started=loop.time(), trace_id=1, route=route, alias="chat",
                           stream=True)
    events: list[SSEEvent] = []
    broken = None
    async with asyncio.TaskGroup() as tg:
        winner = await Engine(rt).run(record, body_for(door, **extra), tg, loop.time() + 120)
        assert isinstance(winner, ResumingStream)
        async with winner:
            try:
                async for batch in winner:
                    events.extend(batch)
            except StreamBroken as exc:
                broken = exc
    return Read(record.summary(loop.time()), events, broken)


def text_of(door: WireFormat, events: list[SSEEvent]) -> str:
    out = []
    for ev in events:
        data = ev.data
        if door is OPENAI:
            for choice in data.get("choices") or ():
                out.append((choice.get("delta") or {}).get("content") or "")
        elif data.get("type") == "content_block_delta" and data["delta"].get("type") == "text_delta":
            out.append(data["delta"]["text"])
        elif data.get("type") == "content_block_start" and data["content_block"].get("type") == "text":
            out.append(data["content_block"].get("text") or "")
    return "".join(out)


@pytest.mark.parametrize(("door", "second_kind"), [(OPENAI, ANTHROPIC), (OPENAI, OPENAI),
                                                    (ANTHROPIC, ANTHROPIC), (ANTHROPIC, OPENAI)])
async def test_a_broken_stream_is_spliced_into_one_stream(door: WireFormat, second_kind: WireFormat) -> None:
    a = ContinuingProvider("a", door, [Script(break_after=4)])
    b = ContinuingProvider("b", second_kind)
    rt = runtime(a, b, prefill={"b": "continue_final_message"})
    got = await read(rt, door)
    assert got.broken is None
    assert text_of(door, got.events) == ANSWER  # character by character: nothing repeated, nothing missing
    assert b.received[0].prefill == ANSWER[:24]  # four pieces of six: what the client had
    summary = got.summary
    assert [(x.launch, x.outcome) for x in summary.attempts] == [(Launch.PRIMARY, Outcome.WON),
                                                                 (Launch.RESUME, Outcome.WON)]
    assert summary.attempts[0].error is not None and summary.attempts[0].error.error_type == "overloaded_error"
    assert summary.resumes == 1 and summary.resumed_at_tokens == summary.attempts[0].billed_output_tokens
    assert rt.breakers["a"].consecutive_failures == 1  # the failed provider's breaker counts the failure
    assert summary.wasted_cost_usd == 0  # both attempts' output reached the client
    billed_in = sum(x.billed_input_tokens for x in summary.attempts)
    billed_out = sum(x.billed_output_tokens for x in summary.attempts)
    if door is OPENAI:
        ids = {ev.data["id"] for ev in got.events}
        assert ids == {"chatcmpl-a1"}  # the first stream's id throughout
        roles = [ev for ev in got.events if (ev.data.get("choices") or [{}])[0].get("delta", {}).get("role")]
        assert len(roles) == 1
        finish = [c["finish_reason"] for ev in got.events for c in ev.data.get("choices") or () if
                  c.get("finish_reason")]
        assert finish == ["stop"]
        usage = got.events[-1].data["usage"]
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (billed_in, billed_out)
        assert usage["total_tokens"] == billed_in + billed_out
    else:
        kinds = [ev.data["type"] for ev in got.events]
        assert kinds.count("message_start") == 1 and kinds[-1] == "message_stop"
        assert got.events[0].data["message"]["id"] == "msg_a1"
        assert {ev.data["index"] for ev in got.events if "index" in ev.data} == {0}  # the text block goes on
        assert kinds.count("content_block_start") == 1 and kinds.count("content_block_stop") == 1
        delta = next(ev.data for ev in got.events if ev.data["type"] == "message_delta")
        assert delta["delta"]["stop_reason"] == "end_turn"
        assert delta["usage"]["output_tokens"] == billed_out and delta["usage"]["input_tokens"] == billed_in


@pytest.mark.parametrize("door", [OPENAI, ANTHROPIC])
@pytest.mark.parametrize("leading_space", [True, False])
async def test_anthropic_prefill_loses_its_trailing_whitespace_and_the_client_keeps_it(
        door: WireFormat, leading_space: bool) -> None:
    answer = "Hello there friend, this is a longer answer."
    a = ContinuingProvider("a", door, [Script(break_after=1)], answer=answer)  # cut after "Hello "
    b = ContinuingProvider("b", ANTHROPIC, [Script(leading_space=leading_space)], answer=answer)
    got = await read(runtime(a, b), door)
    last = b.received[0].body["messages"][-1]
    sent = last["content"] if isinstance(last["content"], str) else last["content"][0]["text"]
    assert sent == "Hello"  # the API refuses a prefill ending in whitespace
    assert text_of(door, got.events) == answer  # the space once, whether the continuation repeats it or not


async def test_openai_kind_target_without_declared_prefill_is_no_resume_target() -> None:
    a = ContinuingProvider("a", OPENAI, [Script(break_after=3)])
    b = ContinuingProvider("b", OPENAI)
    got = await read(runtime(a, b), OPENAI)
    assert got.broken is not None and got.broken.cause_type == "overloaded_error"
    assert b.received == [] and got.summary.resumes == 0


async def test_prefix_style_marks_the_assistant_message() -> None:
    a = ContinuingProvider("a", OPENAI, [Script(break_after=3)])
    b = ContinuingProvider("b", OPENAI)
    got = await read(runtime(a, b, prefill={"b": "prefix"}), OPENAI)
    assert text_of(OPENAI, got.events) == ANSWER
    assert b.received[0].body["messages"][-1]["prefix"] is True


async def test_a_model_that_refuses_prefill_is_passed_over() -> None:
    a = ContinuingProvider("a", ANTHROPIC, [Script(break_after=3)])
    b = ContinuingProvider("b", ANTHROPIC)
    c = ContinuingProvider("c", ANTHROPIC)
    got = await read(runtime(a, b, c, models={"b": "claude-sonnet-4-6"}), ANTHROPIC)
    assert b.received == [] and len(c.received) == 1
    assert text_of(ANTHROPIC, got.events) == ANSWER


async def test_extended_thinking_request_is_not_resumed_with_a_prefill() -> None:
    a = ContinuingProvider("a", ANTHROPIC, [Script(break_after=3)])
    b = ContinuingProvider("b", ANTHROPIC)
    got = await read(runtime(a, b), ANTHROPIC, thinking={"type": "enabled", "budget_tokens": 1024})
    assert got.broken is not None and b.received == []


@pytest.mark.parametrize("door", [OPENAI, ANTHROPIC])
async def test_a_cut_inside_a_tool_call_is_not_resumed(door: WireFormat) -> None:
    a = ContinuingProvider("a", door, [Script(tool_after=2)])
    b = ContinuingProvider("b", door)
    got = await read(runtime(a, b, prefill={"b": "continue_final_message"}), door)
    assert got.broken is not None and got.broken.cause_type == "overloaded_error"
    assert b.received == []


@pytest.mark.parametrize("door", [OPENAI, ANTHROPIC])
async def test_a_cut_inside_a_thinking_block_is_not_resumed(door: WireFormat) -> None:
    a = ContinuingProvider("a", door, [Script(thinking=True, break_after=0)])
    b = ContinuingProvider("b", door)
    got = await read(runtime(a, b, prefill={"b": "continue_final_message"}), door)
    if door is ANTHROPIC:
        # Anthropic closes the thinking block before the cut: between blocks, so it is resumed (new indexes).
        assert got.broken is None and len(b.received) == 1
        assert b.received[0].prefill is None  # no text yet: nothing to prefill
        starts = [ev.data for ev in got.events if ev.data["type"] == "content_block_start"]
        assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "thinking"), (1, "text")]
        assert text_of(door, got.events) == ANSWER
    else:
        # OpenAI reasoning has no end marker: a cut before any answer text is inside the reasoning.
        assert got.broken is not None and b.received == []


async def test_a_cut_between_blocks_continues_block_indexes() -> None:
    a = ContinuingProvider("a", ANTHROPIC, [Script(thinking=True, break_after=2)])
    b = ContinuingProvider("b", ANTHROPIC, [Script(thinking=True)])
    got = await read(runtime(a, b), ANTHROPIC)
    starts = [(ev.data["index"], ev.data["content_block"]["type"]) for ev in got.events
              if ev.data["type"] == "content_block_start"]
    # The client's text block 1 was open: the continuation's thinking closes it, then its blocks follow on.
    assert starts == [(0, "thinking"), (1, "text"), (2, "thinking"), (3, "text")]
    stops = [ev.data["index"] for ev in got.events if ev.data["type"] == "content_block_stop"]
    assert stops == [0, 1, 2, 3]


async def test_a_stall_after_commit_fails_the_attempt_at_stream_stall_ms() -> None:
    a = ContinuingProvider("a", OPENAI, [Script(stall_after=3, stall_s=50)])
    b = ContinuingProvider("b", ANTHROPIC)
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = await read(runtime(a, b, resume=0, stall_ms=2000), OPENAI)
    assert got.broken is not None and got.broken.cause_type == "stream_stall"
    assert loop.time() - start == pytest.approx(0.1 + 2 * 0.01 + 2.0)  # not the provider's 60 s timeout
    assert a.received[0].cancelled  # the stalled upstream is closed
    assert got.summary.attempts[0].error is not None
    assert b.received == []


async def test_a_stalled_stream_is_resumed() -> None:
    a = ContinuingProvider("a", ANTHROPIC, [Script(stall_after=5, stall_s=50)])
    b = ContinuingProvider("b", ANTHROPIC)
    rt = runtime(a, b, stall_ms=1000)
    got = await read(rt, ANTHROPIC)
    assert got.broken is None and text_of(ANTHROPIC, got.events) == ANSWER
    assert rt.breakers["a"].consecutive_failures == 1


@pytest.mark.parametrize(("max_resumes", "completes"), [(1, False), (2, True)])
async def test_resumes_are_bounded_per_request(max_resumes: int, completes: bool) -> None:
    a = ContinuingProvider("a", ANTHROPIC, [Script(break_after=2)])
    b = ContinuingProvider("b", ANTHROPIC, [Script(break_after=3)])
    c = ContinuingProvider("c", ANTHROPIC)
    got = await read(runtime(a, b, c, resume=max_resumes), ANTHROPIC)
    assert (got.broken is None) is completes
    assert got.summary.resumes == max_resumes
    if completes:
        assert text_of(ANTHROPIC, got.events) == ANSWER
        assert c.received[0].prefill == ANSWER[:30]  # 2 pieces from a, then 3 from b
        delta = next(ev.data for ev in got.events if ev.data["type"] == "message_delta")
        assert delta["usage"]["output_tokens"] == sum(x.billed_output_tokens for x in got.summary.attempts)
    else:
        assert c.received == []


async def test_a_resume_the_budget_refuses_is_not_sent() -> None:
    a = ContinuingProvider("a", OPENAI, [Script(break_after=2)])
    b = ContinuingProvider("b", ANTHROPIC)
    rt = runtime(a, b, budget=BudgetOptions(percent=0, min_per_window=0))
    got = await read(rt, OPENAI)
    assert got.broken is not None and b.received == []


@pytest.mark.parametrize("unavailable", ["breaker_open", "rate_limited"])
async def test_a_resume_with_no_target_to_go_to_spends_no_resume_budget(unavailable: str) -> None:
    # Regression (cdb4ce9): the budget was spent before knowing a resume would be launched.
    a = ContinuingProvider("a", OPENAI, [Script(break_after=2)])
    b = ContinuingProvider("b", ANTHROPIC)
    rt = runtime(a, b)
    route = rt.config.models["chat"]
    if unavailable == "breaker_open":
        breaker = rt.breakers["b"]
        for _ in range(breaker.options.fail_max):
            permit = breaker.try_acquire()
            assert permit is not None
            permit.failure()
    else:
        rt.cool_down(route.targets[1], 60.0)  # a 429 with Retry-After: 60
    budget = rt.resume_budget(route)
    assert budget.snapshot() == (0, 0) and budget.has_room()
    got = await read(rt, OPENAI)
    assert got.broken is not None and b.received == []  # the stream could go nowhere: the client gets the error
    assert [(x.provider, x.launch, x.outcome, x.skip_reason) for x in got.summary.attempts] == [
        ("a", Launch.PRIMARY, Outcome.WON, None), ("b", Launch.RESUME, Outcome.SKIPPED, unavailable)]
    assert got.summary.resumes == 0
    assert budget.snapshot() == (1, 0)  # the request is counted; no resume was sent, so none was paid for


async def test_no_resume_when_the_target_could_not_answer_before_the_deadline() -> None:
    a = ContinuingProvider("a", OPENAI, [Script(break_after=2)])
    b = ContinuingProvider("b", ANTHROPIC, [Script(ttft_s=200)])
    rt = runtime(a, b)
    for _ in range(5):
        rt.record_latency(rt.config.models["chat"].targets[1], True, 200.0)  # b usually takes 200 s
    got = await read(rt, OPENAI)
    assert got.broken is not None and b.received == []


async def test_the_output_limit_is_lowered_by_what_was_generated() -> None:
    a = ContinuingProvider("a", ANTHROPIC, [Script(break_after=4)])
    b = ContinuingProvider("b", ANTHROPIC)
    await read(runtime(a, b), ANTHROPIC)
    assert b.received[0].body["max_tokens"] == 100 - 6  # 24 characters streamed: 6 estimated tokens


async def test_an_open_breaker_is_recorded_as_skipped_and_the_next_target_resumes() -> None:
    a = ContinuingProvider("a", ANTHROPIC, [Script(break_after=2)])
    b = ContinuingProvider("b", ANTHROPIC)
    c = ContinuingProvider("c", ANTHROPIC)
    rt = runtime(a, b, c)
    breaker = rt.breakers["b"]
    for _ in range(breaker.options.fail_max):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.failure()
    got = await read(rt, ANTHROPIC)
    assert text_of(ANTHROPIC, got.events) == ANSWER and b.received == []
    assert [(x.provider, x.launch, x.outcome, x.skip_reason) for x in got.summary.attempts] == [
        ("a", Launch.PRIMARY, Outcome.WON, None), ("b", Launch.RESUME, Outcome.SKIPPED, "breaker_open"),
        ("c", Launch.RESUME, Outcome.WON, None)]


async def test_a_client_leaving_during_a_resume_cancels_and_settles_the_resume_attempt() -> None:
    a = ContinuingProvider("a", OPENAI, [Script(break_after=2)])
    b = ContinuingProvider("b", ANTHROPIC, [Script(ttft_s=5.0)])
    rt = runtime(a, b)
    loop = asyncio.get_running_loop()
    record = RequestRecord(request_id=1, door=OPENAI, started=loop.time(), trace_id=1,
                           route=rt.config.models["chat"], alias="chat", stream=True)

    async def client() -> None:
        winner = await Engine(rt).run(record, body_for(OPENAI), tg, loop.time() + 60)
        async with winner:  # type: ignore[union-attr]
            async for _ in winner:  # type: ignore[union-attr]
                pass

    async with asyncio.TaskGroup() as tg:
        reader = tg.create_task(client())
        await asyncio.sleep(1.0)  # a broke at 0.12 s; b is 0.9 s into its 5 s to first token
        assert len(b.received) == 1 and not reader.done()
        reader.cancel()
    attempts = {x.provider: x for x in record.attempts}
    assert attempts["b"].outcome is Outcome.CANCELLED and attempts["b"].launch is Launch.RESUME
    assert b.received[0].cancelled  # its upstream was closed
    assert rt.breakers["b"].consecutive_failures == 0  # a cancelled attempt says nothing of its provider
