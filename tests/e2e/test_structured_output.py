"""Real apps work unchanged: structured output and tool choice, through both doors to both provider kinds.

The official SDKs are the clients, over HTTP to the gateway on 127.0.0.1, which talks HTTP to simulated providers.
The simulator answers from the schema it receives (`gateway.simulator.answers`): an answer that is right after the
round trip proves the schema reached the provider whole, translated or not, and the answer came back whole.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from anthropic.types import MessageParam, ToolParam
from jsonschema import Draft202012Validator
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel, Field

from gateway.simulator import SimulatedProvider
from gateway.simulator.answers import Tool, json_answer, tool_call
from tests.e2e.harness import Running, config_for, running

ALIASES = {"via-openai": "oa", "via-anthropic": "an"}  # alias -> the provider (of that kind) behind it


class Mode(enum.Enum):
    TRAIN = "train"
    PLANE = "plane"


class Leg(BaseModel):
    origin: str
    destination: str
    mode: Mode
    hours: float = Field(gt=0, le=48)


class Trip(BaseModel):
    title: str = Field(min_length=4)
    legs: list[Leg]
    budget_eur: int = Field(ge=100)
    note: str | None = None


# The schema openai's `parse(response_format=Trip)` sends (its strict form: every property required, no extras).
TRIP_STRICT_SCHEMA: dict[str, Any] = dict(openai.pydantic_function_tool(Trip)["function"]["parameters"])


@dataclass
class Env:
    r: Running
    sims: dict[str, SimulatedProvider]

    def sim_of(self, alias: str) -> SimulatedProvider:
        return self.sims[ALIASES[alias]]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with SimulatedProvider(name="oa", seed=1) as oa, SimulatedProvider(name="an", seed=2) as an:
        config = config_for({"oa": ("openai", oa), "an": ("anthropic", an)}, {
            "via-openai": {"targets": [{"provider": "oa", "model": "gpt-x"}]},
            "via-anthropic": {"targets": [{"provider": "an", "model": "claude-x"}]},
        })
        async with running(config) as r:
            yield Env(r, {"oa": oa, "an": an})


def assert_valid(schema: Any, value: object) -> None:
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(value)


def answer_for(schema: Any) -> Any:
    """What the simulator answers for `schema`: the answer a client must get back, unchanged."""
    return json.loads("".join(json_answer(schema)))


def sent_schema(env: Env, alias: str) -> Any:
    """The answer schema the provider behind `alias` received, in its own format."""
    body = env.sim_of(alias).stats.last_body
    if ALIASES[alias] == "oa":
        response_format = body["response_format"]
        assert response_format["type"] == "json_schema"
        return response_format["json_schema"]["schema"]
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema" and "output_format" not in body
    return fmt["schema"]


# ---- OpenAI door: chat.completions.parse(response_format=PydanticModel) ----------------------------------

PLAN: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Plan the trip."}]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("alias", list(ALIASES))
async def test_openai_parse_with_a_pydantic_model(env: Env, alias: str, stream: bool) -> None:
    async with env.r.openai() as client:
        if stream:
            async with client.chat.completions.stream(model=alias, messages=PLAN, response_format=Trip) as events:
                completion = await events.get_final_completion()
        else:
            completion = await client.chat.completions.parse(model=alias, messages=PLAN, response_format=Trip)
    # To an Anthropic-kind provider, response_format json_schema became output_config.format with the same schema.
    assert sent_schema(env, alias) == TRIP_STRICT_SCHEMA
    if alias == "via-anthropic":
        assert "response_format" not in env.sim_of(alias).stats.last_body
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    answer = json.loads(choice.message.content or "")
    assert answer == answer_for(TRIP_STRICT_SCHEMA)
    assert_valid(TRIP_STRICT_SCHEMA, answer)
    trip = choice.message.parsed
    assert isinstance(trip, Trip) and trip == Trip.model_validate(answer)
    assert [leg.mode for leg in trip.legs] == [Mode.TRAIN, Mode.PLANE]


@pytest.mark.parametrize("alias", list(ALIASES))
async def test_openai_parse_cut_by_max_tokens_raises_the_sdks_length_error(env: Env, alias: str) -> None:
    async with env.r.openai() as client:
        with pytest.raises(openai.LengthFinishReasonError):
            await client.chat.completions.parse(model=alias, messages=PLAN, response_format=Trip,
                                                max_completion_tokens=3)


# ---- Anthropic door: output_config.format -------------------------------------------------------------------

TRIP_SCHEMA: dict[str, Any] = Trip.model_json_schema()  # with $defs and $ref, as a hand-written request may have


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("alias", list(ALIASES))
async def test_anthropic_output_config_format(env: Env, alias: str, stream: bool) -> None:
    request: Any = {"model": alias, "max_tokens": 2000, "messages": [{"role": "user", "content": "Plan."}],
                    "output_config": {"format": {"type": "json_schema", "schema": TRIP_SCHEMA}}}
    async with env.r.anthropic() as client:
        if stream:
            async with client.messages.stream(**request) as events:
                pieces = [text async for text in events.text_stream]
                message = await events.get_final_message()
            assert len(pieces) > 20  # streamed piece by piece, not one blob at the end
        else:
            message = await client.messages.create(**request)
    # To an OpenAI-kind provider, output_config.format became response_format json_schema with the same schema.
    assert sent_schema(env, alias) == TRIP_SCHEMA
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    answer = json.loads(message.content[0].text)
    assert answer == answer_for(TRIP_SCHEMA)
    assert_valid(TRIP_SCHEMA, answer)
    assert Trip.model_validate(answer).budget_eur >= 100


@pytest.mark.parametrize("alias", list(ALIASES))
async def test_anthropic_sdk_parse_with_a_pydantic_model(env: Env, alias: str) -> None:
    class Stop(BaseModel):
        city: str
        mode: Mode

    class Route(BaseModel):
        stops: list[Stop]
        note: str | None = None

    async with env.r.anthropic() as client:
        message = await client.messages.parse(model=alias, max_tokens=2000, output_format=Route,
                                              messages=[{"role": "user", "content": "Route?"}])
    route = message.parsed_output
    assert isinstance(route, Route) and [s.mode for s in route.stops] == [Mode.TRAIN, Mode.PLANE]
    schema = sent_schema(env, alias)  # the SDK's own rewrite of Route's schema, as it reached the provider
    assert_valid(schema, json.loads(message.content[0].text))  # type: ignore[union-attr]


# ---- tool choice: three tools, steered by the last user message ----------------------------------------------

SCHEMAS: dict[str, dict[str, Any]] = {
    "get_weather": {"type": "object", "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"],
        "additionalProperties": False},
    "search_docs": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer", "minimum": 10, "maximum": 50}},
        "required": ["query", "limit"]},
    "create_ticket": {"type": "object", "properties": {
        "title": {"type": "string", "minLength": 8},
        "priority": {"enum": ["p2", "p1"]},
        "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True}},
        "required": ["title", "priority", "labels"]},
}
OPENAI_TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": name, "description": f"{name} tool", "parameters": schema}}
    for name, schema in SCHEMAS.items()]
ANTHROPIC_TOOLS: list[ToolParam] = [{"name": name, "description": f"{name} tool", "input_schema": schema}
                                    for name, schema in SCHEMAS.items()]
# An earlier user turn names another tool: only the last user message steers. The first listed tool is never
# the answer by default here, because the earlier turn names one and each tool is named in turn.
EARLIER = "Please search_docs for me."


def last_message(name: str) -> str:
    return f"Thanks. Now {name}, please: the build is red."


def openai_messages(name: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "system", "content": "You may use tools."}, {"role": "user", "content": EARLIER},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": last_message(name)}]}]


def anthropic_messages(name: str) -> list[MessageParam]:
    return [{"role": "user", "content": EARLIER}, {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": last_message(name)}]}]


def expected_arguments(name: str) -> Any:
    """The simulator's arguments for `name`, generated from its schema: what must come back, unchanged."""
    return json.loads(tool_call(Tool(name, SCHEMAS[name])).arguments)


def tool_choice_for(door: str, stream: bool) -> Any:
    # Both kinds of choice that let the message steer: auto when whole, required/any when streamed.
    if door == "openai":
        return "required" if stream else "auto"
    return {"type": "any"} if stream else {"type": "auto"}


@pytest.mark.parametrize("name", list(SCHEMAS))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("alias", list(ALIASES))
async def test_openai_door_calls_the_tool_the_last_user_message_names(env: Env, alias: str, stream: bool,
                                                                     name: str) -> None:
    choice = tool_choice_for("openai", stream)
    async with env.r.openai() as client:
        if stream:
            async with client.chat.completions.stream(model=alias, messages=openai_messages(name),
                                                      tools=OPENAI_TOOLS, tool_choice=choice) as events:
                completion = await events.get_final_completion()
        else:
            completion = await client.chat.completions.create(model=alias, messages=openai_messages(name),
                                                              tools=OPENAI_TOOLS, tool_choice=choice)
    result = completion.choices[0]
    calls = result.message.tool_calls
    assert calls is not None and len(calls) == 1 and calls[0].type == "function"
    assert (calls[0].function.name, result.finish_reason) == (name, "tool_calls")
    arguments = json.loads(calls[0].function.arguments)
    assert arguments == expected_arguments(name)
    Draft202012Validator(SCHEMAS[name]).validate(arguments)
    assert calls[0].id  # the client needs it to send the tool result back
    sent = env.sim_of(alias).stats.last_body
    assert len(sent["tools"]) == 3  # every tool reached the provider, translated or not


@pytest.mark.parametrize("name", list(SCHEMAS))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("alias", list(ALIASES))
async def test_anthropic_door_calls_the_tool_the_last_user_message_names(env: Env, alias: str, stream: bool,
                                                                        name: str) -> None:
    choice = tool_choice_for("anthropic", stream)
    async with env.r.anthropic() as client:
        if stream:
            async with client.messages.stream(model=alias, max_tokens=1000, messages=anthropic_messages(name),
                                              tools=ANTHROPIC_TOOLS, tool_choice=choice) as events:
                message = await events.get_final_message()
        else:
            message = await client.messages.create(model=alias, max_tokens=1000, messages=anthropic_messages(name),
                                                   tools=ANTHROPIC_TOOLS, tool_choice=choice)
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].type == "tool_use"
    assert (uses[0].name, message.stop_reason) == (name, "tool_use")
    assert uses[0].input == expected_arguments(name)
    Draft202012Validator(SCHEMAS[name]).validate(uses[0].input)
    assert uses[0].id
    sent = env.sim_of(alias).stats.last_body
    assert len(sent["tools"]) == 3
