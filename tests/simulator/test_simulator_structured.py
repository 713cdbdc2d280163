"""Structured output, driven by both official SDKs: the answer text is JSON valid against the requested schema."""

from __future__ import annotations

import enum
import json
from typing import Any

import anthropic
import openai
import pytest
from jsonschema import Draft202012Validator
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field

from gateway.simulator import SimProfile, SimulatedProvider

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Plan the trip."}]


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
    note: str | None = None  # optional: in strict mode required but nullable


def assert_valid(schema: Any, value: object) -> None:
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(value)


def check_trip(trip: Trip | None) -> None:
    assert isinstance(trip, Trip)
    assert trip.title == "simx" and trip.budget_eur == 100
    assert [leg.mode for leg in trip.legs] == [Mode.TRAIN, Mode.PLANE]  # list items vary, for uniqueItems
    assert trip.note == "sim"


async def test_openai_parse_with_a_pydantic_model(sim: SimulatedProvider, oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.parse(model="gpt-sim", messages=MESSAGES, response_format=Trip)
    message = completion.choices[0].message
    check_trip(message.parsed)
    sent = sim.stats.last_body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert_valid(sent["json_schema"]["schema"], json.loads(message.content or ""))
    # A structured answer is as long as its JSON (not output_tokens): usage counts its pieces.
    assert completion.usage is not None and completion.usage.completion_tokens > 5
    assert completion.choices[0].finish_reason == "stop"


async def test_openai_streamed_parse_splits_the_json_across_deltas(oai: openai.AsyncOpenAI) -> None:
    async with oai.chat.completions.stream(model="m", messages=MESSAGES, response_format=Trip,
                                           stream_options={"include_usage": True}) as stream:
        # (The first chunk's content is "", as the real API's role chunk.)
        deltas = [event.delta async for event in stream if event.type == "content.delta" and event.delta]
        final = await stream.get_final_completion()
    check_trip(final.choices[0].message.parsed)
    assert len(deltas) > 20 and deltas[:3] == ['{"', "title", '":']
    assert final.usage is not None and final.usage.completion_tokens == len(deltas)


async def test_openai_json_object_mode_answers_a_json_object(oai: openai.AsyncOpenAI) -> None:
    reply = await oai.chat.completions.create(model="m", messages=MESSAGES, response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content or "") == {"answer": "sim"}
    text = await oai.chat.completions.create(model="m", messages=MESSAGES, response_format={"type": "text"})
    assert text.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"


async def test_openai_max_tokens_cuts_the_json_short(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        await oai.chat.completions.parse(model="m", messages=MESSAGES, response_format=Trip, max_completion_tokens=3)
    reply = await oai.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=3,
                                              response_format={"type": "json_object"})
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.content == '{"answer":'


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_anthropic_output_config_format(sim: SimulatedProvider, claude: anthropic.AsyncAnthropic,
                                              stream: bool) -> None:
    schema = Trip.model_json_schema()
    request: Any = {"model": "claude-sim", "max_tokens": 2000, "messages": [{"role": "user", "content": "Plan."}],
                    "output_config": {"format": {"type": "json_schema", "schema": schema}, "effort": "high"}}
    if stream:
        async with claude.messages.stream(**request) as events:
            pieces = [text async for text in events.text_stream]
            message = await events.get_final_message()
        assert len(pieces) > 20 and message.usage.output_tokens == len(pieces)
    else:
        message = await claude.messages.create(**request)
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    answer = json.loads(message.content[0].text)
    assert_valid(schema, answer)
    check_trip(Trip.model_validate(answer))


async def test_anthropic_sdk_parse_with_a_pydantic_model(sim: SimulatedProvider,
                                                         claude: anthropic.AsyncAnthropic) -> None:
    # The SDK rewrites the schema (constraints it deems unsupported move into descriptions) and validates the
    # answer with the model itself: the model here has no such constraints.
    class Leg2(BaseModel):
        origin: str
        mode: Mode

    class Plan(BaseModel):
        legs: list[Leg2]
        note: str | None = None

    message = await claude.messages.parse(model="m", max_tokens=2000, output_format=Plan,
                                          messages=[{"role": "user", "content": "Plan."}])
    plan = message.parsed_output
    assert isinstance(plan, Plan) and [leg.mode for leg in plan.legs] == [Mode.TRAIN, Mode.PLANE]
    sent = sim.stats.last_body["output_config"]["format"]
    assert_valid(sent["schema"], json.loads(message.content[0].text))  # type: ignore[union-attr]


async def test_anthropic_max_tokens_cuts_the_json_short(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="m", max_tokens=2, messages=[{"role": "user", "content": "Plan."}],
        output_config={"format": {"type": "json_schema", "schema": Trip.model_json_schema()}})
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2
    assert message.content[0].type == "text" and message.content[0].text == '{"title'


async def test_a_tool_call_wins_over_a_structured_answer(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="m", max_tokens=500, messages=[{"role": "user", "content": "Plan."}],
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}], tool_choice={"type": "any"},
        output_config={"format": {"type": "json_schema", "schema": Trip.model_json_schema()}})
    assert message.stop_reason == "tool_use"


async def test_output_tokens_does_not_cut_a_structured_answer(sim: SimulatedProvider,
                                                               oai: openai.AsyncOpenAI) -> None:
    # The profile's answer length is for text; a structured answer is always whole (only max_tokens cuts it).
    sim.profile = SimProfile(output_tokens=1)
    completion = await oai.chat.completions.parse(model="m", messages=MESSAGES, response_format=Trip)
    check_trip(completion.choices[0].message.parsed)
    assert completion.usage is not None and completion.usage.completion_tokens > 1
    assert sim.stats.tokens_sent == completion.usage.completion_tokens
