"""Real clients whose default is the Responses API, end to end through the gateway on 127.0.0.1:

- the OpenAI Agents SDK (`openai-agents`, a dev dependency): an `Agent` with one function tool and no model
  class of its own (so OpenAIResponsesModel), `Runner.run` and `Runner.run_streamed`;
- Vercel's AI SDK (`ai` + `@ai-sdk/openai`, npm, installed by .ci/run into .clients/node): `generateText` and
  `streamText` with the default `openai()` provider and a tool (tests/ai_sdk_client.mjs).

Each runs against a native Responses provider and against an Anthropic one reached by translation. Without
the AI SDK (or node) the test fails under CI=true and is skipped on a developer's machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider
from agents.models.openai_responses import OpenAIResponsesModel

from gateway.simulator import SimulatedProvider
from gateway.simulator.chat import answer_text
from tests.e2e.harness import GATEWAY_KEY, Running, running
from tests.e2e.responses_harness import received_texts, responses_config

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENTS = ROOT / ".clients" / "node"
AI_SDK_SCRIPT = ROOT / "tests" / "ai_sdk_client.mjs"
RUN_TIMEOUT_S = 60
ANSWER = answer_text(16)
ALIASES = ["native", "via-anthropic"]
PROMPT = "What is the weather in Paris? Use get_weather"


@pytest.fixture
async def gw() -> AsyncIterator[Running]:
    async with SimulatedProvider(name="nat", seed=1) as nat, SimulatedProvider(name="an", seed=2) as an:
        config = responses_config({"nat": ("openai", nat), "an": ("anthropic", an)}, {
            "native": {"targets": [{"provider": "nat", "model": "gpt-n"}]},
            "via-anthropic": {"targets": [{"provider": "an", "model": "claude-x"}]},
        }, native=("nat",))
        async with running(config) as r:
            r.sims = {"native": nat, "via-anthropic": an}  # type: ignore[attr-defined]
            yield r


def sim_of(gw: Running, alias: str) -> SimulatedProvider:
    sim: SimulatedProvider = gw.sims[alias]  # type: ignore[attr-defined]
    return sim


# ---- the OpenAI Agents SDK ---------------------------------------------------------------------------------


def agent_setup(gw: Running) -> tuple[RunConfig, list[str]]:
    """A run config whose provider is the SDK's default one (Responses API) pointed at the gateway, tracing off
    (the SDK would export traces to OpenAI), and the list the tool appends to when it runs."""
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=30)
    provider = OpenAIProvider(openai_client=client)
    assert isinstance(provider.get_model("native"), OpenAIResponsesModel)  # the default model class
    return RunConfig(model_provider=provider, tracing_disabled=True), []


def weather_agent(alias: str, calls: list[str]) -> Agent[Any]:
    @function_tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    return Agent(name="weather", instructions="Answer with the weather.", model=alias, tools=[get_weather])


@pytest.mark.parametrize("alias", ALIASES)
async def test_agents_sdk_run(gw: Running, alias: str) -> None:
    run_config, calls = agent_setup(gw)
    result = await Runner.run(weather_agent(alias, calls), PROMPT, run_config=run_config)
    assert result.final_output == ANSWER
    assert [item.type for item in result.new_items] == ["tool_call_item", "tool_call_output_item",
                                                        "message_output_item"]
    assert len(calls) == 1
    sim = sim_of(gw, alias)
    assert sim.stats.received == 2  # the call, then the answer from its result
    assert f"sunny in {calls[0]}" in received_texts(sim)
    assert [r.status for r in gw.collect.records] == [200, 200]


@pytest.mark.parametrize("alias", ALIASES)
async def test_agents_sdk_run_streamed(gw: Running, alias: str) -> None:
    run_config, calls = agent_setup(gw)
    result = Runner.run_streamed(weather_agent(alias, calls), PROMPT, run_config=run_config)
    kinds = [event.type async for event in result.stream_events()]
    assert result.final_output == ANSWER and len(calls) == 1
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert all(r.stream for r in gw.collect.records) and sim_of(gw, alias).stats.received == 2


# ---- Vercel's AI SDK ---------------------------------------------------------------------------------------


def node_modules() -> Path:
    found = (NODE_CLIENTS / "node_modules" / "@ai-sdk" / "openai").is_dir() and shutil.which("node") is not None
    if not found:
        message = (f"the AI SDK is not installed in {NODE_CLIENTS} (or node is missing): `npm install --prefix "
                   ".clients/node ai @ai-sdk/openai` (.ci/run does it)")
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return NODE_CLIENTS


async def run_ai_sdk(gw: Running, alias: str) -> dict[str, Any]:
    # The script is evaluated in .clients/node, so its imports resolve to the packages installed there. Its
    # environment is built from nothing: no key or base URL of the machine's own reaches it.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(NODE_CLIENTS), "GATEWAY_URL": f"{gw.url}/v1",
           "GATEWAY_KEY": GATEWAY_KEY, "MODEL": alias}
    proc = await asyncio.create_subprocess_exec(
        "node", "--input-type=module", "--eval", AI_SDK_SCRIPT.read_text(), cwd=node_modules(), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"the AI SDK client did not finish within {RUN_TIMEOUT_S} s")
    if proc.returncode != 0:
        pytest.fail(f"the AI SDK client exited {proc.returncode}: {err.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


@pytest.mark.parametrize("alias", ALIASES)
async def test_ai_sdk_generate_and_stream_text_with_a_tool(gw: Running, alias: str) -> None:
    result = await run_ai_sdk(gw, alias)
    for call in ("generate", "stream"):
        assert result[call]["text"] == ANSWER, result
        assert result[call]["toolCalls"] == ["get_weather"] and result[call]["steps"] == 2
        assert result[call]["finishReason"] == "stop"
    assert result["stream"]["deltas"] == 16 and len(result["executed"]) == 2
    assert result["generate"]["responseId"].startswith("resp_")
    sim = sim_of(gw, alias)
    assert sim.stats.received == 4 and [r.status for r in gw.collect.records] == [200] * 4
    assert [r.stream for r in gw.collect.records] == [False, False, True, True]  # generateText, then streamText
    assert f"sunny in {result['executed'][-1]}" in received_texts(sim)
