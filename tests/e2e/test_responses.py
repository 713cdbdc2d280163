"""The Responses door with the official openai SDK: text, tools, structured output, streams and their helpers,
conversation state across providers and hedges, and the stored-response endpoints. Every alias is served by a
simulated provider of one kind: native (Responses API), chat completions, or Anthropic Messages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import openai
import pydantic
import pytest

from gateway.engine.attempt import Launch, Outcome
from gateway.simulator import SimulatedProvider, parse_profile
from gateway.simulator.chat import answer_text
from tests.e2e.harness import GATEWAY_KEY, Running, running
from tests.e2e.responses_harness import OTHER_KEY, received_texts, responses_config

ALIASES = ["native", "via-openai", "via-anthropic"]
ANSWER = answer_text(16)
WEATHER: Any = {"type": "function", "name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": False}, "strict": True}
CITY_SCHEMA: Any = {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
                    "required": ["name", "population"], "additionalProperties": False}


class City(pydantic.BaseModel):
    name: str
    population: int


@pytest.fixture
async def gw() -> AsyncIterator[Running]:
    async with SimulatedProvider(name="nat", seed=1) as nat, SimulatedProvider(name="oa", seed=2) as oa, \
            SimulatedProvider(name="an", seed=3) as an:
        config = responses_config({"nat": ("openai", nat), "oa": ("openai", oa), "an": ("anthropic", an)}, {
            "native": {"targets": [{"provider": "nat", "model": "gpt-n",
                                    "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]},
            "via-openai": {"targets": [{"provider": "oa", "model": "gpt-x"}]},
            "via-anthropic": {"targets": [{"provider": "an", "model": "claude-x"}]},
            "chat-then-native": {"targets": [{"provider": "oa", "model": "gpt-x"}, {"provider": "nat",
                                                                                    "model": "gpt-n"}],
                                 "hedge": "off"},
        }, native=("nat",), server={"api_keys": [GATEWAY_KEY, {"key": OTHER_KEY, "name": "other"}]})
        async with running(config) as r:
            r.sims = {"native": nat, "via-openai": oa, "via-anthropic": an}  # type: ignore[attr-defined]
            yield r


def sim_of(gw: Running, alias: str) -> SimulatedProvider:
    sim: SimulatedProvider = gw.sims[alias]  # type: ignore[attr-defined]
    return sim


@pytest.mark.parametrize("alias", ALIASES)
async def test_create_text(gw: Running, alias: str) -> None:
    async with gw.openai() as client:
        raw = await client.responses.with_raw_response.create(model=alias, input="Hello there",
                                                              instructions="be brief", max_output_tokens=64)
        response = raw.parse()
    assert response.output_text == ANSWER and response.status == "completed"
    assert response.id.startswith("resp_") and response.object == "response" and response.store is True
    assert response.instructions == "be brief" and response.max_output_tokens == 64
    assert response.usage is not None and response.usage.output_tokens == 16 and response.usage.input_tokens >= 1
    assert response.usage.total_tokens == response.usage.input_tokens + 16
    sent = sim_of(gw, alias).stats.last_body
    assert raw.headers["x-gateway-provider"] == {"native": "nat", "via-openai": "oa", "via-anthropic": "an"}[alias]
    if alias == "native":  # stored by the gateway, never upstream
        assert sent["store"] is False and sent["instructions"] == "be brief" and sent["max_output_tokens"] == 64
    elif alias == "via-openai":
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert sent["max_completion_tokens"] == 64
    else:
        assert sent["system"] == "be brief" and sent["max_tokens"] == 64


@pytest.mark.parametrize("alias", ALIASES)
async def test_function_tool_round_trip(gw: Running, alias: str) -> None:
    question: Any = [{"role": "user", "content": "What is the weather in Paris? Use get_weather"}]
    async with gw.openai() as client:
        first = await client.responses.create(model=alias, input=question, tools=[WEATHER])
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1 and calls[0].name == "get_weather"
        assert set(json.loads(calls[0].arguments)) == {"city"}
        result = {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}
        # The conversation sent back by the client itself, as the Agents SDK does...
        again = await client.responses.create(
            model=alias, tools=[WEATHER], store=False,
            input=[*question, *[item.model_dump(exclude_none=True) for item in first.output], result])
        assert again.output_text == ANSWER  # after a tool result the simulator answers in text
        assert "sunny, 21 C" in received_texts(sim_of(gw, alias))
        # ... or kept by the gateway: only the tool result is sent, with the previous response's id.
        chained = await client.responses.create(model=alias, tools=[WEATHER], input=[result],
                                                previous_response_id=first.id)
    assert chained.output_text == ANSWER
    sent = sim_of(gw, alias).stats.last_body
    texts = received_texts(sim_of(gw, alias))
    assert texts[0].startswith("What is the weather") and texts[-1] == "sunny, 21 C"
    if alias == "native":
        assert [item.get("type") for item in sent["input"]][-2:] == ["function_call", "function_call_output"]
    elif alias == "via-openai":
        assert sent["messages"][-2]["tool_calls"][0]["id"] == calls[0].call_id
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "sunny, 21 C"}
    else:
        assert sent["messages"][-2]["content"][-1]["type"] == "tool_use"
        assert sent["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": calls[0].call_id,
                                                      "content": "sunny, 21 C"}


@pytest.mark.parametrize("alias", ALIASES)
async def test_structured_output(gw: Running, alias: str) -> None:
    async with gw.openai() as client:
        response = await client.responses.create(
            model=alias, input="A city, please",
            text={"format": {"type": "json_schema", "name": "city", "schema": CITY_SCHEMA, "strict": True}})
        parsed = await client.responses.parse(model=alias, input="A city, please", text_format=City)
    jsonschema.validate(json.loads(response.output_text), CITY_SCHEMA)
    assert isinstance(parsed.output_parsed, City)
    sent = sim_of(gw, alias).stats.last_body
    if alias == "native":
        assert sent["text"]["format"]["type"] == "json_schema"
    elif alias == "via-openai":
        assert sent["response_format"]["type"] == "json_schema"
    else:
        assert sent["output_config"]["format"]["type"] == "json_schema"


@pytest.mark.parametrize("alias", ALIASES)
async def test_stream_and_its_helpers(gw: Running, alias: str) -> None:
    async with gw.openai() as client:
        async with client.responses.stream(model=alias, input="Hello there") as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        async with client.responses.stream(model=alias, input="What is the weather? Use get_weather",
                                           tools=[WEATHER], tool_choice="required") as tool_stream:
            tool_events = [event async for event in tool_stream]
            tool_final = await tool_stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.content_part.added" in types
    assert "response.output_text.done" in types and "response.output_item.done" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert {e.response.id for e in events if hasattr(e, "response")} == {final.id}
    assert "".join(deltas) == ANSWER == final.output_text
    assert final.usage is not None and final.usage.output_tokens == 16
    arguments = "".join(e.delta for e in tool_events if e.type == "response.function_call_arguments.delta")
    done = [e for e in tool_events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == arguments and set(json.loads(arguments)) == {"city"}
    call = tool_final.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == arguments


@pytest.mark.parametrize("alias", ALIASES)
async def test_conversation_is_kept_by_the_gateway(gw: Running, alias: str) -> None:
    async with gw.openai() as client:
        first = await client.responses.create(model=alias, input="My name is Ada", instructions="first rules")
        async with client.responses.stream(model=alias, input="What is my name?", instructions="second rules",
                                           previous_response_id=first.id) as stream:
            second = await stream.get_final_response()
    assert second.previous_response_id == first.id and second.output_text == ANSWER
    # The provider got the whole conversation, and the second turn's instructions only (not carried over).
    texts = received_texts(sim_of(gw, alias))
    assert texts == ["second rules", "My name is Ada", ANSWER, "What is my name?"]
    assert "previous_response_id" not in sim_of(gw, alias).stats.last_body


async def test_a_turn_can_move_to_another_kind_of_provider(gw: Running) -> None:
    """Turn 1 by a native provider, turn 2 by one reached through chat completions: one conversation."""
    async with gw.openai() as client:
        first = await client.responses.create(model="native", input="My name is Ada")
        second = await client.responses.create(model="via-anthropic", input="What is my name?",
                                               previous_response_id=first.id)
        third = await client.responses.create(model="via-openai", input="Thanks", previous_response_id=second.id)
    assert third.output_text == ANSWER
    assert received_texts(sim_of(gw, "via-openai")) == ["My name is Ada", ANSWER, "What is my name?", ANSWER,
                                                        "Thanks"]


async def test_stored_responses_can_be_read_listed_and_deleted(gw: Running) -> None:
    async with gw.openai() as client:
        first = await client.responses.create(model="via-openai", input="My name is Ada")
        second = await client.responses.create(model="native", previous_response_id=first.id,
                                               input=[{"role": "user", "content": [
                                                   {"type": "input_text", "text": "What is my name?"}]}])
        again = await client.responses.retrieve(second.id)
        assert again.id == second.id and again.output_text == ANSWER and again.previous_response_id == first.id
        newest_first = [item async for item in client.responses.input_items.list(second.id)]
        page = await client.responses.input_items.list(second.id, order="asc", limit=2)
        rest = await client.responses.input_items.list(second.id, order="asc", after=page.data[-1].id)
        assert [item.role for item in newest_first] == ["user", "assistant", "user"]  # type: ignore[union-attr]
        assert newest_first[0].content[0].text == "What is my name?"  # type: ignore[union-attr]
        assert [item.id for item in page.data + rest.data] == [item.id for item in reversed(newest_first)]
        assert page.has_more is True and rest.has_more is False
        assert newest_first[1].id == first.output[0].id  # the model's answer, listed under its own id
        await client.responses.delete(second.id)
        with pytest.raises(openai.NotFoundError) as gone:
            await client.responses.retrieve(second.id)
        assert gone.value.status_code == 404 and second.id in gone.value.message
        with pytest.raises(openai.NotFoundError):
            await client.responses.delete(second.id)
        await client.responses.retrieve(first.id)  # deleting a response leaves the turns before it


async def test_another_key_never_sees_a_response(gw: Running) -> None:
    async with gw.openai() as client:
        mine = await client.responses.create(model="native", input="a secret")
    async with gw.openai(key=OTHER_KEY) as other:
        for call in (other.responses.retrieve(mine.id), other.responses.delete(mine.id),
                     other.responses.input_items.list(mine.id)):
            with pytest.raises(openai.NotFoundError) as info:
                await call
            assert info.value.status_code == 404
        with pytest.raises(openai.BadRequestError) as bad:
            await other.responses.create(model="native", input="and?", previous_response_id=mine.id)
        assert bad.value.code == "previous_response_not_found" and bad.value.param == "previous_response_id"
    async with gw.openai() as client:
        assert (await client.responses.retrieve(mine.id)).id == mine.id  # still there for its owner


async def test_store_false_keeps_nothing_and_unknown_ids_are_errors(gw: Running) -> None:
    async with gw.openai() as client:
        unstored = await client.responses.create(model="via-anthropic", input="hi", store=False)
        assert unstored.store is False
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(unstored.id)
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model="via-anthropic", input="hi", previous_response_id=unstored.id)
        assert "not found" in bad.value.message
        with pytest.raises(openai.NotFoundError):
            await client.responses.input_items.list("resp_never_was")
    assert sim_of(gw, "via-anthropic").stats.received == 1  # the refused turn never went upstream


async def test_builtin_tools_skip_translated_targets_or_are_a_400(gw: Running) -> None:
    web_search: Any = [{"type": "web_search"}]
    async with gw.openai() as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model="via-openai", input="news?", tools=web_search)
        assert bad.value.param == "tools[0].type" and "web_search" in bad.value.message
        # A native target further down takes it: the chat one is skipped, not failed.
        response = await client.responses.create(model="chat-then-native", input="news?", tools=web_search)
    assert response.output_text == ANSWER
    record = gw.collect.records[-1]
    assert [(a.provider, a.outcome, a.skip_reason) for a in record.attempts] == [
        ("oa", Outcome.SKIPPED, "unsupported_request"), ("nat", Outcome.WON, None)]
    assert sim_of(gw, "via-openai").stats.received == 0
    assert sim_of(gw, "native").stats.last_body["tools"] == web_search


async def test_bad_requests_are_worded_as_the_api_words_them(gw: Running) -> None:
    async with gw.openai() as client:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"input": None}, "input"), ({"input": "x", "max_output_tokens": 5}, "max_output_tokens"),
            ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
            ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
            ({"input": "x", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
            ({"input": "x", "background": True}, "background")]
        for extra, param in cases:
            with pytest.raises(openai.BadRequestError) as bad:
                await client.responses.create(model="native", **extra)
            assert bad.value.param == param, (extra, bad.value.message)
    assert sim_of(gw, "native").stats.received == 0


async def test_previous_response_id_survives_a_hedge_to_another_provider() -> None:
    """Turn 1 is won by provider A (native); A then turns slow, and turn 2 is won by the hedge to B (Anthropic),
    which must have received the whole conversation from the gateway."""
    async with SimulatedProvider(parse_profile({"ttft": 0}), name="a", seed=1) as a, \
            SimulatedProvider(parse_profile({"ttft": 0}), name="b", seed=2) as b:
        config = responses_config({"a": ("openai", a), "b": ("anthropic", b)}, {"chat": {
            "targets": [{"provider": "a", "model": "gpt-a"}, {"provider": "b", "model": "claude-b"}],
            "hedge": {"delay_ms": 100, "budget_percent": 100}}}, native=("a",))
        async with running(config) as r, r.openai() as client:
            first = await client.responses.create(model="chat", input="My name is Ada", instructions="be kind")
            assert r.collect.records[-1].winner is not None and r.collect.records[-1].winner.provider == "a"
            a.profile = parse_profile({"ttft": 5000})
            second = await client.responses.create(model="chat", input="What is my name?",
                                                   previous_response_id=first.id)
            third = await client.responses.create(model="chat", input="Bye", previous_response_id=second.id)
        await a.wait_idle()
    record = r.collect.records[-2]
    assert [(x.provider, x.launch, x.outcome) for x in record.attempts] == [
        ("a", Launch.PRIMARY, Outcome.CANCELLED), ("b", Launch.HEDGE, Outcome.WON)]
    assert second.previous_response_id == first.id and third.previous_response_id == second.id
    assert b.stats.received == 2 and a.stats.disconnected == 2
    assert received_texts(b) == ["My name is Ada", ANSWER, "What is my name?", ANSWER, "Bye"]
    assert "be kind" not in received_texts(b)  # instructions belong to their own turn
