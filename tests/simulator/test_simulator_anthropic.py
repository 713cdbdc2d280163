"""The Anthropic door of the simulator, driven by the official anthropic SDK."""

from __future__ import annotations

import json

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from gateway.simulator import SimProfile, SimulatedProvider, key_fingerprint

MESSAGES: list[MessageParam] = [{"role": "user", "content": [{"type": "text", "text": "Hello there, simulator!"}]}]
SYSTEM = "Be brief."
# "Be brief." (9) + "Hello there, simulator!" (23) = 32 characters -> 8 input tokens, as for OpenAI.
INPUT_TOKENS = 8
TOOLS: list[ToolParam] = [
    {"name": "search", "input_schema": {"type": "object"}},
    {"name": "lookup", "input_schema": {"type": "object"}},
]


async def test_non_streaming_message_text_usage_and_model_echo(
        sim: SimulatedProvider, claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model="claude-sim", max_tokens=100, system=SYSTEM, messages=MESSAGES)
    assert message.model == "claude-sim"
    assert message.stop_reason == "end_turn"
    assert len(message.content) == 1 and message.content[0].type == "text"
    assert message.content[0].text == "tok0 tok1 tok2 tok3 tok4"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (INPUT_TOKENS, 5)
    assert sim.stats.completed == 1 and sim.stats.tokens_sent == 5


async def test_max_tokens_truncates_with_stop_reason_max_tokens(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model="m", max_tokens=2, messages=MESSAGES)
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "text" and message.content[0].text == "tok0 tok1"
    assert message.usage.output_tokens == 2


async def test_streaming_accumulates_text_and_usage(sim: SimulatedProvider, claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model="claude-sim", max_tokens=100, system=SYSTEM, messages=MESSAGES) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["tok0", " tok1", " tok2", " tok3", " tok4"]
    assert final.stop_reason == "end_turn"
    assert final.model == "claude-sim"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (INPUT_TOKENS, 5)
    assert sim.stats.completed == 1


async def test_raw_stream_has_event_lines_in_the_real_order(sim: SimulatedProvider) -> None:
    body = {"model": "m", "max_tokens": 3, "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as http, http.post(sim.base_url + "/v1/messages", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = (await resp.read()).decode()
    events = [block.split("\n") for block in text.split("\n\n") if block]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    payloads = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert [p["type"] for p in payloads] == names  # data type matches the event line
    assert payloads[-2]["usage"]["output_tokens"] == 3
    assert payloads[-2]["delta"]["stop_reason"] == "max_tokens"


async def test_forced_any_tool_calls_the_first_tool(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model="m", max_tokens=100, messages=MESSAGES, tools=TOOLS,
                                           tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("search", {"query": "sim"})


async def test_streamed_named_tool_use_assembles_in_the_sdk(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model="m", max_tokens=100, messages=MESSAGES, tools=TOOLS,
                                      tool_choice={"type": "tool", "name": "lookup"}) as stream:
        partials = [event.partial_json async for event in stream if event.type == "input_json"]
        final = await stream.get_final_message()
    assert len(partials) == 2
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("lookup", {"query": "sim"})


async def test_tools_without_tool_choice_answer_with_text(claude: anthropic.AsyncAnthropic) -> None:
    # What Claude Code sends (many tools, no tool_choice) gets text, not a call of the first tool.
    message = await claude.messages.create(model="m", max_tokens=100, messages=MESSAGES, tools=TOOLS)
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"


async def test_529_is_overloaded(sim: SimulatedProvider, claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SimProfile(error_rate=1.0, error_status=529)
    with pytest.raises(anthropic.InternalServerError) as caught:
        await claude.messages.create(model="m", max_tokens=10, messages=MESSAGES)
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert caught.value.status_code == 529
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert sim.stats.errors_by_status == {529: 1}


async def test_429_is_rate_limit_error_with_retry_after(sim: SimulatedProvider,
                                                       claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SimProfile(error_rate=1.0, error_status=429, retry_after_s=0.5)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await claude.messages.create(model="m", max_tokens=10, messages=MESSAGES)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "0.5"


async def test_midstream_error_event_raises_in_the_sdk(sim: SimulatedProvider,
                                                      claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SimProfile(midstream_error_rate=1.0, error_status=529)
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(model="m", max_tokens=100, messages=MESSAGES) as stream:
            async for text in stream.text_stream:
                seen.append(text)
    assert seen == ["tok0"]
    assert isinstance(caught.value.body, dict) and caught.value.body["error"]["type"] == "overloaded_error"
    assert sim.stats.errors == 1 and sim.stats.completed == 0


async def test_require_key_accepts_bearer_and_x_api_key(sim: SimulatedProvider) -> None:
    sim.profile = SimProfile(require_key="sk-ant-right", output_tokens=1)
    async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="sk-ant-wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await wrong.messages.create(model="m", max_tokens=10, messages=MESSAGES)
    assert caught.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                           "message": "Invalid API key (simulated)."}}
    async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key="sk-ant-right", max_retries=0) as right:
        message = await right.messages.create(model="m", max_tokens=10, messages=MESSAGES)
    assert message.content[0].type == "text"
    # Older SDKs and many gateways send x-api-key instead of a bearer token.
    body = {"model": "m", "max_tokens": 10, "messages": MESSAGES}
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/v1/messages", json=body,
                             headers={"x-api-key": "sk-ant-right", "anthropic-version": "2023-06-01"}) as resp:
            assert resp.status == 200
        async with http.post(sim.base_url + "/v1/messages", json=body, headers={"x-api-key": "nope"}) as resp:
            assert resp.status == 401
    assert sim.stats.last_headers["x-api-key"] == key_fingerprint("nope")
    assert sim.stats.errors_by_status == {401: 2}


async def test_missing_max_tokens_is_invalid_request(sim: SimulatedProvider) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            sim.base_url + "/v1/messages", json={"model": "m", "messages": MESSAGES}) as resp:
        assert resp.status == 400
        assert await resp.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": "max_tokens: Field required"}}


async def test_models_list_in_anthropic_shape(sim: SimulatedProvider, claude: anthropic.AsyncAnthropic) -> None:
    sim.profile = SimProfile(models=("claude-a", "claude-b"))
    page = await claude.models.list()
    assert [m.id for m in page.data] == ["claude-a", "claude-b"]
