"""Resumed streams end to end: both SDKs read a stream whose provider failed or stalled mid-way as one answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config.load import parse_config
from gateway.engine.attempt import Launch, Outcome
from gateway.simulator import SimulatedProvider, parse_profile
from gateway.simulator.chat import answer_text
from gateway.telemetry.span_attributes import request_end
from tests.e2e.harness import GATEWAY_KEY, Running, running

MESSAGES: Any = [{"role": "user", "content": "Tell me a story"}]
TOKENS = 40


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    stack: list[Any] = []

    async def factory(primary_kind: str, primary: dict[str, Any], backup_kind: str,
                      model: dict[str, Any]) -> Running:
        a = SimulatedProvider(parse_profile({"output_tokens": TOKENS, "per_token": 2, **primary}), name="a", seed=1)
        b = SimulatedProvider(parse_profile({"output_tokens": TOKENS, "per_token": 2}), name="b", seed=2)
        for sim in (a, b):
            await sim.start()
            stack.append(sim)

        def provider(kind: str, sim: SimulatedProvider) -> dict[str, Any]:
            out: dict[str, Any] = {"kind": kind, "base_url": sim.base_url + ("/v1" if kind == "openai" else ""),
                                   "api_key": "k", "timeout_s": 20}
            if kind == "openai":
                out["prefill"] = True  # the simulator continues an assistant message like vLLM
            return out

        config = parse_config({
            "server": {"api_keys": [GATEWAY_KEY]}, "telemetry": {"traces_file": ""},
            "providers": {"a": provider(primary_kind, a), "b": provider(backup_kind, b)},
            "models": {"chat": {"targets": [{"provider": "a", "model": "claude-sonnet-4-5",
                                             "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
                                            {"provider": "b", "model": "claude-haiku-4-5",
                                             "price": {"input_per_mtok": 3, "output_per_mtok": 4}}],
                                "hedge": {"delay_ms": 5000}, **model}}}, {})
        ctx = running(config)
        r = await ctx.__aenter__()
        stack.append(ctx)
        return r

    yield factory
    for item in reversed(stack):
        if isinstance(item, SimulatedProvider):
            await item.stop()
        else:
            await item.__aexit__(None, None, None)


KINDS = [("openai", "anthropic"), ("anthropic", "openai"), ("openai", "openai"), ("anthropic", "anthropic")]
BROKEN = {"midstream_error_rate": 1.0, "midstream_error_at": 12}


@pytest.mark.parametrize(("primary", "backup"), KINDS)
async def test_openai_sdk_reads_a_resumed_stream_as_one_answer(make: Any, primary: str, backup: str) -> None:
    r = await make(primary, BROKEN, backup, {"resume": "on"})
    async with r.openai() as client:
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer_text(TOKENS)
    assert len({c.id for c in chunks}) == 1
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    record = r.collect.records[-1]
    assert record.status == 200 and record.resumes == 1
    assert [(a.provider, a.launch, a.outcome) for a in record.attempts] == [
        ("a", Launch.PRIMARY, Outcome.WON), ("b", Launch.RESUME, Outcome.WON)]
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == sum(a.billed_output_tokens for a in record.attempts)
    assert usage.prompt_tokens == sum(a.billed_input_tokens for a in record.attempts)
    attrs = request_end(record)
    assert attrs["gateway.resumed"] is True and attrs["gateway.resumed.at_output_tokens"] == \
        record.attempts[0].billed_output_tokens


@pytest.mark.parametrize(("primary", "backup"), KINDS)
async def test_anthropic_sdk_reads_a_resumed_stream_as_one_answer(make: Any, primary: str, backup: str) -> None:
    r = await make(primary, BROKEN, backup, {"resume": {"max": 1}})
    async with r.anthropic() as client, client.messages.stream(model="chat", max_tokens=200,
                                                                messages=MESSAGES) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        message = await stream.get_final_message()
    assert text == answer_text(TOKENS)
    assert len(message.content) == 1 and message.content[0].type == "text"
    assert message.content[0].text == answer_text(TOKENS)
    assert message.stop_reason == "end_turn"
    record = r.collect.records[-1]
    assert record.resumes == 1 and record.status == 200
    assert message.usage.output_tokens == sum(a.billed_output_tokens for a in record.attempts)


async def test_a_stalled_primary_is_resumed_long_before_its_timeout(make: Any) -> None:
    stall = {"midstream_stall_rate": 1.0, "midstream_stall_ms": 20000, "midstream_stall_at": [5, 30]}
    r = await make("openai", stall, "anthropic", {"resume": "on", "stream_stall_ms": 300})
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with r.anthropic() as client, client.messages.stream(model="chat", max_tokens=200,
                                                                messages=MESSAGES) as stream:
        message = await stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == answer_text(TOKENS)
    assert loop.time() - start < 5.0  # the stall is 20 s
    record = r.collect.records[-1]
    assert record.attempts[0].error is not None and record.attempts[0].error.error_type == "stream_stall"


async def test_without_resume_the_client_gets_the_error_event(make: Any) -> None:
    import openai

    r = await make("openai", BROKEN, "anthropic", {})
    async with r.openai() as client:
        stream = await client.chat.completions.create(model="chat", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    assert r.collect.records[-1].resumes == 0
