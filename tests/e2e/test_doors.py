"""Both doors, both provider kinds, streaming and not, errors and auth: the official SDKs as clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from gateway.simulator import SimulatedProvider
from gateway.simulator.stats import key_fingerprint
from tests.e2e.harness import GATEWAY_KEY, Running, config_for, running

TOOL_OPENAI: Any = {"type": "function", "function": {
    "name": "search", "description": "look it up", "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}}}}}
TOOL_ANTHROPIC: Any = {"name": "search", "description": "look it up",
                       "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}
MESSAGES: Any = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
async def gw() -> AsyncIterator[Running]:
    async with SimulatedProvider(name="oa", seed=1) as oa, SimulatedProvider(name="an", seed=2) as an:
        config = config_for({"oa": ("openai", oa), "an": ("anthropic", an)}, {
            "via-openai": {"targets": [{"provider": "oa", "model": "gpt-x",
                                        "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]},
            "via-anthropic": {"targets": [{"provider": "an", "model": "claude-x"}]},
        })
        async with running(config) as r:
            r.sims = {"oa": oa, "an": an}  # type: ignore[attr-defined]
            yield r


@pytest.mark.parametrize("alias", ["via-openai", "via-anthropic"])
async def test_openai_door_non_streaming(gw: Running, alias: str) -> None:
    async with gw.openai() as client:
        raw = await client.chat.completions.with_raw_response.create(model=alias, messages=MESSAGES)
        completion = raw.parse()
    assert completion.choices[0].message.content == " ".join(f"tok{i}" for i in range(16)) or \
        completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 16
    assert completion.usage.prompt_tokens >= 1
    assert raw.headers["x-gateway-provider"] == ("oa" if alias == "via-openai" else "an")


@pytest.mark.parametrize("alias", ["via-openai", "via-anthropic"])
async def test_openai_door_streaming_with_usage(gw: Running, alias: str) -> None:
    async with gw.openai() as client:
        stream = await client.chat.completions.create(model=alias, messages=MESSAGES, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 16
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16


async def test_openai_door_streaming_without_usage_sends_no_usage_chunk(gw: Running) -> None:
    async with gw.openai() as client:
        stream = await client.chat.completions.create(model="via-anthropic", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


@pytest.mark.parametrize("alias", ["via-openai", "via-anthropic"])
async def test_anthropic_door_non_streaming(gw: Running, alias: str) -> None:
    async with gw.anthropic() as client:
        message = await client.messages.create(model=alias, max_tokens=100, messages=MESSAGES,
                                               system="be brief")
    assert message.content[0].type == "text" and len(message.content[0].text.split()) == 16
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 16
    sim = gw.sims["oa" if alias == "via-openai" else "an"]  # type: ignore[attr-defined]
    sent = sim.stats.last_body
    if alias == "via-openai":  # translated: the system prompt became a system message
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    else:
        assert sent["system"] == "be brief"


@pytest.mark.parametrize("alias", ["via-openai", "via-anthropic"])
async def test_anthropic_door_streaming(gw: Running, alias: str) -> None:
    async with gw.anthropic() as client, client.messages.stream(model=alias, max_tokens=100,
                                                                messages=MESSAGES) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert len(text.split()) == 16
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 16


async def test_tool_calls_cross_both_ways(gw: Running) -> None:
    async with gw.openai() as client:
        completion = await client.chat.completions.create(
            model="via-anthropic", messages=MESSAGES, tools=[TOOL_OPENAI], tool_choice="required")
    call = completion.choices[0].message.tool_calls
    assert call is not None and call[0].function.name == "search"
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call[0].function.arguments == '{"query": "sim"}' or '"sim"' in call[0].function.arguments
    async with gw.anthropic() as aclient:
        message = await aclient.messages.create(model="via-openai", max_tokens=50, messages=MESSAGES,
                                                tools=[TOOL_ANTHROPIC], tool_choice={"type": "any"})
    block = message.content[-1]
    assert block.type == "tool_use" and block.name == "search" and block.input == {"query": "sim"}
    assert message.stop_reason == "tool_use"


async def test_gateway_key_is_required_on_both_doors(gw: Running) -> None:
    async with gw.openai(key="wrong") as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="via-openai", messages=MESSAGES)
    assert info.value.status_code == 401
    async with gw.anthropic(key="wrong") as aclient:
        with pytest.raises(anthropic.AuthenticationError):
            await aclient.messages.create(model="via-openai", max_tokens=10, messages=MESSAGES)
    async with aiohttp.ClientSession() as http:
        for headers in ({"x-api-key": GATEWAY_KEY}, {"authorization": f"Bearer {GATEWAY_KEY}"}):
            async with http.post(f"{gw.url}/v1/messages", headers=headers, json={
                    "model": "via-openai", "max_tokens": 5, "messages": MESSAGES}) as resp:
                assert resp.status == 200
        async with http.post(f"{gw.url}/v1/messages", json={"model": "x"}) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["type"] == "error" and body["error"]["type"] == "authentication_error"


async def test_client_key_is_never_forwarded_and_provider_key_is(gw: Running) -> None:
    async with gw.anthropic() as client:
        await client.messages.create(model="via-anthropic", max_tokens=10, messages=MESSAGES)
    async with gw.openai() as oclient:
        await oclient.chat.completions.create(model="via-openai", messages=MESSAGES)
    sims = gw.sims  # type: ignore[attr-defined]
    an_headers = {k.lower(): v for k, v in sims["an"].stats.last_headers.items()}
    oa_headers = {k.lower(): v for k, v in sims["oa"].stats.last_headers.items()}
    assert an_headers["x-api-key"] == key_fingerprint("provider-secret-an")
    assert "authorization" not in an_headers
    assert oa_headers["authorization"] == key_fingerprint("Bearer provider-secret-oa") or \
        oa_headers["authorization"] == key_fingerprint("provider-secret-oa")
    assert "x-api-key" not in oa_headers


async def test_bad_requests_get_errors_in_the_doors_shape(gw: Running) -> None:
    async with gw.openai() as client:
        with pytest.raises(openai.NotFoundError) as nf:
            await client.chat.completions.create(model="nope", messages=MESSAGES)
        assert "nope" in nf.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="via-openai", messages=[])
        assert bad.value.param == "messages"
    async with gw.anthropic() as aclient:
        with pytest.raises(anthropic.BadRequestError) as abad:
            await aclient.messages.create(model="via-openai", max_tokens=-1, messages=MESSAGES)
        assert "max_tokens" in abad.value.message
    headers = {"authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/chat/completions", data=b"{not json", headers=headers) as resp:
            assert resp.status == 400
            assert "not valid JSON" in (await resp.json())["error"]["message"]
        async with http.post(f"{gw.url}/v1/messages", data=b"\xff\xfe", headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["type"] == "error"
        big = b'{"model": "via-openai", "messages": [{"role": "user", "content": "' + b"x" * 2_000_000 + b'"}]}'
        async with http.post(f"{gw.url}/v1/chat/completions", data=big, headers=headers) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["type"] == "request_too_large"
        async with http.get(f"{gw.url}/v1/nothing-here") as resp:
            assert resp.status == 404 and "error" in await resp.json()
    assert gw.sims["oa"].stats.received == 0  # type: ignore[attr-defined]  # nothing malformed went upstream


async def test_upstream_client_error_passes_through(gw: Running) -> None:
    sims = gw.sims  # type: ignore[attr-defined]
    sims["oa"].profile = sims["oa"].profile.__class__(error_rate=1.0, error_status=422)
    async with gw.anthropic() as client:
        with pytest.raises(anthropic.UnprocessableEntityError):
            await client.messages.create(model="via-openai", max_tokens=10, messages=MESSAGES)
    assert sims["oa"].stats.received == 1


async def test_models_and_health(gw: Running) -> None:
    async with gw.openai() as client:
        ids = [m.id async for m in client.models.list()]
    assert ids == ["via-openai", "via-anthropic"]
    async with gw.anthropic() as aclient:
        page = await aclient.models.list()
    assert [m.id for m in page.data] == ids
    async with aiohttp.ClientSession() as http, http.get(f"{gw.url}/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
