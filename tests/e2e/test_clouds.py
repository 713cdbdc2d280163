"""The same model on several clouds, through the gateway: Claude on Anthropic, Bedrock and Vertex; GPT on
OpenAI and Azure OpenAI (both URL styles, api-key and Entra ID). Every upstream is a simulator on 127.0.0.1
speaking its cloud's wire format and checking its auth (SigV4 signatures, Google tokens from the simulator's
token endpoint through google-auth, Azure keys and tokens). The simulators' own counters prove what each
cloud saw: a cut loser is `disconnected` there, on every kind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from azure.core.credentials import AccessToken

from gateway.config import parse_config
from gateway.engine.attempt import Launch, Outcome
from gateway.policies.breaker import BreakerState
from gateway.simulator import SimulatedProvider, parse_profile
from gateway.simulator.azure_wire import FILTER_COMPLETION, FILTER_PROMPT
from tests.cloud_env import (
    AWS_KEY_ID,
    AWS_REQUIRED,
    AWS_SECRET,
    AZURE_KEY,
    ENTRA_TOKEN,
    PROJECT,
    isolate,
    service_account_file,
)
from tests.e2e.harness import GATEWAY_KEY, Running, running

MESSAGES: Any = [{"role": "user", "content": "Hello there"}]
CLAUDE = ("anthropic", "bedrock", "vertex")
GPT = ("openai", "azure", "azure-entra")
MODELS = {"anthropic": "claude-sonnet-4-5", "bedrock": "anthropic.claude-sonnet-4-5-20250929-v1:0",
          "vertex": "claude-sonnet-4-5@20250929", "openai": "gpt-4o", "azure": "gpt-4o-prod",
          "azure-entra": "gpt-4o-eu"}
PRICES = {name: {"input_per_mtok": 1 + i, "output_per_mtok": 10 + i} for i, name in enumerate(MODELS)}
SLOW = {"ttft": 5000}
# Slow enough that every attempt of a race reaches its cloud (the first one of a cloud provider first gets its
# credentials: a thread, a token endpoint) before the winner ends the race.
FAST = {"ttft": 400}


class FakeEntra:
    """An azure-identity TokenCredential that never leaves the process; counts its calls."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(ENTRA_TOKEN, int(time.time()) + 3600)


@dataclass
class Clouds:
    r: Running
    sims: dict[str, SimulatedProvider]
    entra: FakeEntra


def providers(sims: dict[str, SimulatedProvider], sa_file: Path) -> dict[str, Any]:
    breaker = {"fail_max": 3, "reset_timeout_s": 30}
    common = {"timeout_s": 20, "breaker": breaker}
    return {
        "anthropic": {"kind": "anthropic", "base_url": sims["anthropic"].base_url, "api_key": "sk-ant", **common},
        "bedrock": {"kind": "bedrock", "region": "us-east-1", "base_url": sims["bedrock"].base_url,
                    "aws_access_key_id": "${SIM_AWS_KEY_ID}", "aws_secret_access_key": "${SIM_AWS_SECRET}",
                    **common},
        "vertex": {"kind": "vertex", "project": PROJECT, "region": "us-east5",
                   "base_url": sims["vertex"].base_url + "/v1", "credentials_file": str(sa_file), **common},
        "openai": {"kind": "openai", "base_url": sims["openai"].base_url + "/v1", "api_key": "sk-oai", **common},
        "azure": {"kind": "azure-openai", "base_url": sims["azure"].base_url, "api_version": "2024-10-21",
                  "api_key": "${SIM_AZURE_KEY}", **common},
        "azure-entra": {"kind": "azure-openai", "base_url": sims["azure-entra"].base_url, "auth": "entra", **common},
    }


def route(names: tuple[str, ...], hedge: Any) -> dict[str, Any]:
    return {"targets": [{"provider": n, "model": MODELS[n], "price": PRICES[n]} for n in names], "hedge": hedge}


RACE = {"delay_ms": 0, "max_attempts": 3, "budget_percent": 100}


@pytest.fixture
async def make(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Any]:
    """make({provider: profile overrides}) -> Clouds, with aliases claude (3 clouds), gpt (3), and
    single-cloud aliases named after each provider."""
    isolate(monkeypatch, tmp_path)
    entra = FakeEntra()
    monkeypatch.setattr("gateway.providers.azure.entra_credential", lambda: entra)
    stack: list[Any] = []

    async def factory(profiles: dict[str, dict[str, Any]], claude_hedge: Any = RACE) -> Clouds:
        keys = {"bedrock": AWS_REQUIRED, "vertex": "only-issued-tokens", "azure": AZURE_KEY,
                "azure-entra": ENTRA_TOKEN, "anthropic": "sk-ant", "openai": "sk-oai"}
        sims = {}
        for i, name in enumerate(MODELS):
            profile = parse_profile({"output_tokens": 16, "require_key": keys[name], **profiles.get(name, {})})
            sims[name] = SimulatedProvider(profile, name=name, seed=i + 1)
            await sims[name].start()
            stack.append(sims[name])
        sa_file = service_account_file(tmp_path / "sa.json", f"{sims['vertex'].base_url}/token")
        models = {"claude": route(CLAUDE, claude_hedge), "gpt": route(GPT, RACE),
                  **{name: route((name,), "off") for name in MODELS},
                  "bedrock-then-vertex": route(("bedrock", "vertex"), "off"),
                  "bedrock-then-anthropic": route(("bedrock", "anthropic"), "off"),
                  "azure-then-openai": route(("azure", "openai"), "off")}
        env = {"SIM_AWS_KEY_ID": AWS_KEY_ID, "SIM_AWS_SECRET": AWS_SECRET, "SIM_AZURE_KEY": AZURE_KEY}
        config = parse_config({"server": {"api_keys": [GATEWAY_KEY]}, "providers": providers(sims, sa_file),
                               "models": models, "telemetry": {"traces_file": ""}}, env)
        ctx = running(config)
        stack.append(ctx)
        return Clouds(await ctx.__aenter__(), sims, entra)

    yield factory
    for item in reversed(stack):
        if isinstance(item, SimulatedProvider):
            await item.stop()
        else:
            await item.__aexit__(None, None, None)


async def ask(c: Clouds, alias: str, door: str, stream: bool, messages: Any = MESSAGES) -> str:
    if door == "openai":
        async with c.r.openai() as client:
            if stream:
                chunks = await client.chat.completions.create(model=alias, messages=messages, stream=True)
                return "".join([ch.choices[0].delta.content or "" async for ch in chunks if ch.choices])
            completion = await client.chat.completions.create(model=alias, messages=messages)
            return completion.choices[0].message.content or ""
    async with c.r.anthropic() as aclient:
        if stream:
            async with aclient.messages.stream(model=alias, max_tokens=100, messages=messages) as s:
                return "".join([t async for t in s.text_stream])
        message = await aclient.messages.create(model=alias, max_tokens=100, messages=messages)
        return "".join(b.text for b in message.content if b.type == "text")


DOORS = [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)]
ANSWER = " ".join(f"tok{i}" for i in range(16))


async def check_race(c: Clouds, alias: str, names: tuple[str, ...], winner: str, door: str, stream: bool) -> None:
    assert await ask(c, alias, door, stream) == ANSWER
    for name in names:
        await c.sims[name].wait_idle()
        stats = c.sims[name].stats
        assert stats.received == 1, name
        if name == winner:
            assert stats.completed == 1 and stats.disconnected == 0, name
        else:  # the loser's connection was closed: the cloud saw the client leave
            assert stats.disconnected == 1 and stats.completed == 0, name
    record = c.r.collect.records[-1]
    assert {a.provider: a.outcome for a in record.attempts} == {
        n: Outcome.WON if n == winner else Outcome.CANCELLED for n in names}
    for attempt in record.attempts:  # each attempt is priced at its own target's price
        assert attempt.cost_usd == pytest.approx(attempt.target.price.cost_usd(
            attempt.billed_input_tokens, attempt.billed_output_tokens))
        assert attempt.cost_usd > 0
    won = next(a for a in record.attempts if a.outcome is Outcome.WON)
    assert won.output_tokens == 16 and won.input_tokens is not None


@pytest.mark.parametrize(("door", "stream"), DOORS)
@pytest.mark.parametrize("winner", CLAUDE)
async def test_claude_on_three_clouds_fastest_wins_and_losers_are_cut(make: Any, winner: str, door: str,
                                                                      stream: bool) -> None:
    c = await make({name: FAST if name == winner else SLOW for name in CLAUDE})
    await check_race(c, "claude", CLAUDE, winner, door, stream)


@pytest.mark.parametrize(("door", "stream"), DOORS)
@pytest.mark.parametrize("winner", GPT)
async def test_gpt_on_openai_and_azure_fastest_wins_and_losers_are_cut(make: Any, winner: str, door: str,
                                                                       stream: bool) -> None:
    c = await make({name: FAST if name == winner else SLOW for name in GPT})
    await check_race(c, "gpt", GPT, winner, door, stream)
    assert c.entra.scopes == ["https://cognitiveservices.azure.com/.default"]  # fetched once, then cached


@pytest.mark.parametrize("style", ["azure", "azure-entra"])
async def test_azure_answers_keep_their_id_and_model_through_either_door(make: Any, style: str) -> None:
    """Azure's leading prompt-filter chunk (no id, no model) is not what the answer is named after."""
    c = await make({})
    async with c.r.anthropic() as aclient, aclient.messages.stream(model=style, max_tokens=50,
                                                                   messages=MESSAGES) as s:
        message = await s.get_final_message()
    assert message.model == MODELS[style] and len(message.id) > len("msg_")
    async with c.r.openai() as client:
        chunks = [ch async for ch in await client.chat.completions.create(model=style, messages=MESSAGES,
                                                                          stream=True)]
    assert all(ch.id and ch.model == MODELS[style] for ch in chunks)
    assert c.r.collect.records[-1].attempts[0].response_model == MODELS[style]


async def test_a_slow_cloud_is_hedged_after_the_delay(make: Any) -> None:
    c = await make({"anthropic": SLOW, "vertex": SLOW},
                   claude_hedge={"delay_ms": 100, "max_attempts": 3, "budget_percent": 100})
    assert await ask(c, "claude", "anthropic", True) == ANSWER
    record = c.r.collect.records[-1]
    assert [(a.provider, a.launch, a.outcome) for a in record.attempts] == [
        ("anthropic", Launch.PRIMARY, Outcome.CANCELLED), ("bedrock", Launch.HEDGE, Outcome.WON)]
    await c.sims["anthropic"].wait_idle()
    assert c.sims["anthropic"].stats.disconnected == 1 and c.sims["vertex"].stats.received == 0


@pytest.mark.parametrize("name", ["bedrock", "vertex", "azure"])
async def test_client_leaving_closes_the_cloud_stream(make: Any, name: str) -> None:
    c = await make({name: {"per_token": 200}})
    async with c.r.openai() as client:
        chunks = await client.chat.completions.create(model=name, messages=MESSAGES, stream=True)
        async for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        await chunks.close()
    await c.sims[name].wait_idle()
    assert c.sims[name].stats.disconnected == 1 and c.sims[name].stats.completed == 0


async def test_tools_reach_bedrock_from_the_openai_door(make: Any) -> None:
    c = await make({})
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    async with c.r.openai() as client:
        completion = await client.chat.completions.create(
            model="bedrock", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools,
            tool_choice="required")
    call = completion.choices[0].message.tool_calls
    assert completion.choices[0].finish_reason == "tool_calls" and call and call[0].function.name == "get_weather"
    sent = c.sims["bedrock"].stats.last_body
    assert sent["tools"][0]["name"] == "get_weather" and sent["anthropic_version"] == "bedrock-2023-05-31"


async def test_bedrock_throttling_cools_the_target_down(make: Any) -> None:
    c = await make({"bedrock": {"error_rate": 1.0, "error_status": 429}})
    for _ in range(2):
        assert await ask(c, "bedrock-then-vertex", "anthropic", False) == ANSWER
    first, second = c.r.collect.records[-2], c.r.collect.records[-1]
    assert [(a.provider, a.outcome) for a in first.attempts] == [("bedrock", Outcome.FAILED),
                                                                 ("vertex", Outcome.WON)]
    assert first.attempts[0].error is not None and first.attempts[0].error.error_type == "ThrottlingException"
    assert c.sims["bedrock"].stats.received == 1  # cooling down: the second request went straight to Vertex
    assert second.attempts[-1].provider == "vertex"
    assert c.r.gateway.runtime.breakers["bedrock"].state is BreakerState.CLOSED  # a 429 is no fault


async def test_breakers_are_per_provider(make: Any) -> None:
    c = await make({"bedrock": {"error_rate": 1.0, "error_status": 503}})
    for _ in range(3):
        assert await ask(c, "bedrock-then-anthropic", "openai", True) == ANSWER
    breakers = c.r.gateway.runtime.breakers
    assert breakers["bedrock"].state is BreakerState.OPEN
    assert breakers["anthropic"].state is BreakerState.CLOSED and breakers["vertex"].state is BreakerState.CLOSED
    assert await ask(c, "bedrock-then-anthropic", "openai", False) == ANSWER
    assert c.sims["bedrock"].stats.received == 3  # open: not called again


async def test_bedrock_midstream_exception_breaks_the_stream_and_counts_as_a_fault(make: Any) -> None:
    c = await make({"bedrock": {"midstream_error_rate": 1.0}})
    # The exception frame comes right after the first token: that token already reached the client, so
    # the stream breaks; the breaker counts it.
    with pytest.raises(anthropic.APIError):
        await ask(c, "bedrock-then-anthropic", "anthropic", True)
    assert c.r.gateway.runtime.breakers["bedrock"].consecutive_failures == 1


async def test_azure_content_filter_is_the_clients_answer(make: Any) -> None:
    c = await make({})
    with pytest.raises(openai.BadRequestError, match="content management policy") as caught:
        await ask(c, "azure-then-openai", "openai", False, [{"role": "user", "content": FILTER_PROMPT}])
    assert caught.value.status_code == 400
    assert c.sims["openai"].stats.received == 0  # not a provider fault: no fallback ...
    assert c.r.gateway.runtime.breakers["azure"].consecutive_failures == 0  # ... and no breaker count
    async with c.r.anthropic() as aclient:
        message = await aclient.messages.create(model="azure", max_tokens=50,
                                                messages=[{"role": "user", "content": FILTER_COMPLETION}])
    assert message.stop_reason == "refusal"


async def test_wrong_cloud_credentials_are_refused_and_never_echoed(make: Any) -> None:
    c = await make({"bedrock": {"require_key": f"{AWS_KEY_ID}:another-secret"}})
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await ask(c, "bedrock", "anthropic", False)
    assert "signature we calculated does not match" in str(caught.value)
    assert AWS_SECRET not in str(caught.value.body)


async def test_google_tokens_come_from_the_service_account_and_are_cached(make: Any) -> None:
    c = await make({})
    await asyncio.gather(*(ask(c, "vertex", "openai", i % 2 == 0) for i in range(4)))
    assert c.sims["vertex"].clouds.tokens_issued == 1  # one refresh shared by concurrent requests
    assert c.sims["vertex"].stats.completed == 4
