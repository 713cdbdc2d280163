"""The OpenAI door of the simulator, driven by the official openai SDK."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from gateway.simulator import SimProfile, SimulatedProvider, key_fingerprint

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello there, simulator!"},
]
# "Be brief." (9) + "Hello there, simulator!" (23) = 32 characters -> 8 input tokens.
INPUT_TOKENS = 8
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
]


async def test_non_streaming_text_usage_and_model_echo(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    reply = await oai.chat.completions.create(model="gpt-sim", messages=MESSAGES)
    assert reply.model == "gpt-sim"
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        INPUT_TOKENS, 5, INPUT_TOKENS + 5)
    assert sim.stats.completed == 1 and sim.stats.tokens_sent == 5
    assert sim.stats.last_body["model"] == "gpt-sim"


async def test_max_tokens_truncates_with_finish_length(oai: openai.AsyncOpenAI) -> None:
    reply = await oai.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=2)
    assert reply.choices[0].message.content == "tok0 tok1"
    assert reply.choices[0].finish_reason == "length"
    legacy = await oai.chat.completions.create(model="m", messages=MESSAGES, max_tokens=3)
    assert legacy.choices[0].message.content == "tok0 tok1 tok2"


async def test_streaming_role_chunk_content_finish_and_no_usage_unless_asked(
        sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="gpt-sim", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert not chunks[0].choices[0].delta.content  # role-only: content is ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "tok0 tok1 tok2 tok3 tok4"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)
    assert {c.model for c in chunks} == {"gpt-sim"}
    assert sim.stats.completed == 1 and sim.stats.tokens_sent == 5


async def test_streaming_include_usage_adds_a_final_choiceless_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (INPUT_TOKENS, 5)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])


async def test_raw_stream_ends_with_done(sim: SimulatedProvider) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            sim.base_url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        body = (await resp.read()).decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


async def test_required_tool_choice_calls_the_first_tool(oai: openai.AsyncOpenAI) -> None:
    reply = await oai.chat.completions.create(
        model="m", messages=MESSAGES, tools=TOOLS, tool_choice="required")
    assert reply.choices[0].finish_reason == "tool_calls"
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "search"
    assert json.loads(calls[0].function.arguments) == {"query": "sim"}


async def test_streamed_named_tool_call_assembles_in_the_sdk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="m", messages=MESSAGES, tools=TOOLS, stream=True,
        tool_choice={"type": "function", "function": {"name": "lookup"}})
    chunks = [chunk async for chunk in stream]
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function is not None and deltas[0].function.name == "lookup"
    pieces = [d.function.arguments for d in deltas if d.function is not None and d.function.arguments]
    assert len(pieces) == 2
    assert json.loads("".join(pieces)) == {"query": "sim"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_tools_without_forcing_answer_with_text(oai: openai.AsyncOpenAI) -> None:
    reply = await oai.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS)
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"


async def test_500_is_internal_server_error(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(error_rate=1.0, error_status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 500
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "server_error"
    assert sim.stats.errors == 1 and sim.stats.errors_by_status == {500: 1} and sim.stats.completed == 0


async def test_429_is_rate_limit_error_with_retry_after(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(error_rate=1.0, error_status=429, retry_after_s=7)
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"


async def test_midstream_error_raises_after_the_first_token(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(midstream_error_rate=1.0)
    stream = await oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="simulated"):
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "tok0"
    assert sim.stats.errors == 1 and sim.stats.completed == 0 and sim.stats.tokens_sent == 1


async def test_midstream_failure_of_a_whole_body_request_is_a_server_error(
        sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(midstream_error_rate=1.0, error_status=503)
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 503


async def test_require_key_checks_the_bearer_token(sim: SimulatedProvider) -> None:
    sim.profile = SimProfile(require_key="sk-right", output_tokens=1)
    async with openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            await wrong.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    async with openai.AsyncOpenAI(base_url=sim.base_url + "/v1", api_key="sk-right", max_retries=0) as right:
        reply = await right.chat.completions.create(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "tok0"
    # The key itself is never kept: only a fingerprint of it.
    assert sim.stats.last_headers["authorization"] == key_fingerprint("sk-right")
    assert "sk-right" not in repr(sim.stats.as_dict())


async def test_bad_requests_are_400_in_openai_shape(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(model="m", messages=[])
    assert caught.value.param == "messages"
    async with aiohttp.ClientSession() as http, http.post(
            sim.base_url + "/v1/chat/completions", data=b"{not json") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    assert sim.stats.errors_by_status == {400: 2}


async def test_models_list_in_openai_shape(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    sim.profile = SimProfile(models=("alpha", "beta"))
    page = await oai.models.list()
    assert [m.id for m in page.data] == ["alpha", "beta"]
    assert sim.stats.received == 0  # not a chat request
