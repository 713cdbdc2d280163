"""Tool choice, driven by both official SDKs: the tool named in the last user message is called, with arguments
valid against that tool's schema, streamed or not."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, ToolParam
from jsonschema import Draft202012Validator
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from gateway.simulator import SimulatedProvider

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
        "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
        "due": {"type": "string", "format": "date"}}, "required": ["title", "priority", "labels"]},
}
OPENAI_TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": name, "description": f"{name} tool", "parameters": schema}}
    for name, schema in SCHEMAS.items()]
ANTHROPIC_TOOLS: list[ToolParam] = [{"name": name, "description": f"{name} tool", "input_schema": schema}
                                    for name, schema in SCHEMAS.items()]
EXPECTED_TICKET = {"title": "simxxxxx", "priority": "p2", "labels": ["sim", "sim1"], "due": "2025-01-01"}


def openai_messages(last: str) -> list[ChatCompletionMessageParam]:
    # An earlier user turn names another tool: only the last user message steers.
    return [{"role": "system", "content": "You may use tools."},
            {"role": "user", "content": "Please search_docs for me."},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": last}]}]


def anthropic_messages(last: str) -> list[MessageParam]:
    return [{"role": "user", "content": "Please search_docs for me."},
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": last}]}]


def assert_valid_arguments(name: str, arguments: object) -> None:
    Draft202012Validator(SCHEMAS[name], format_checker=Draft202012Validator.FORMAT_CHECKER).validate(arguments)


async def openai_call(oai: openai.AsyncOpenAI, stream: bool, last: str, tool_choice: Any) -> tuple[str, Any, str]:
    """(tool name, parsed arguments, finish reason) of the one tool call in the answer."""
    messages = openai_messages(last)
    if stream:
        async with oai.chat.completions.stream(model="m", messages=messages, tools=OPENAI_TOOLS,
                                               tool_choice=tool_choice) as events:
            completion = await events.get_final_completion()
    else:
        completion = await oai.chat.completions.create(model="m", messages=messages, tools=OPENAI_TOOLS,
                                                       tool_choice=tool_choice)
    choice = completion.choices[0]
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1 and calls[0].type == "function"
    return calls[0].function.name, json.loads(calls[0].function.arguments), str(choice.finish_reason)


async def anthropic_call(claude: anthropic.AsyncAnthropic, stream: bool, last: str,
                         tool_choice: Any) -> tuple[str, Any, str]:
    messages = anthropic_messages(last)
    if stream:
        async with claude.messages.stream(model="m", max_tokens=1000, messages=messages, tools=ANTHROPIC_TOOLS,
                                          tool_choice=tool_choice) as events:
            message = await events.get_final_message()
    else:
        message = await claude.messages.create(model="m", max_tokens=1000, messages=messages,
                                               tools=ANTHROPIC_TOOLS, tool_choice=tool_choice)
    uses = [block for block in message.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].type == "tool_use"
    return uses[0].name, uses[0].input, str(message.stop_reason)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("tool_choice", ["auto", "required"])
async def test_openai_calls_the_tool_named_in_the_last_user_message(
        oai: openai.AsyncOpenAI, stream: bool, tool_choice: str) -> None:
    name, arguments, finish = await openai_call(oai, stream, "Now create_ticket: the build is red.", tool_choice)
    assert (name, finish) == ("create_ticket", "tool_calls")
    assert_valid_arguments(name, arguments)
    assert arguments == EXPECTED_TICKET  # deterministic: the same schema always gives the same arguments


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("tool_choice", [{"type": "auto"}, {"type": "any"}], ids=["auto", "any"])
async def test_anthropic_calls_the_tool_named_in_the_last_user_message(
        claude: anthropic.AsyncAnthropic, stream: bool, tool_choice: Any) -> None:
    name, arguments, stop = await anthropic_call(claude, stream, "What is the weather? Use get_weather.",
                                                 tool_choice)
    assert (name, stop) == ("get_weather", "tool_use")
    assert_valid_arguments(name, arguments)
    assert arguments == {"city": "sim", "unit": "celsius"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_no_tool_named_calls_the_first_tool(oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic,
                                                   stream: bool) -> None:
    # "get_weathers" and "Create_ticket" are not the tools' names as words of their own.
    last = "Any news? get_weathers, Create_ticket"
    name, arguments, _ = await openai_call(oai, stream, last, "required")
    assert name == "get_weather"
    assert_valid_arguments(name, arguments)
    name, arguments, _ = await anthropic_call(claude, stream, last, {"type": "auto"})
    assert name == "get_weather"


async def test_of_several_names_the_first_mentioned_wins(oai: openai.AsyncOpenAI) -> None:
    name, arguments, _ = await openai_call(oai, False, "search_docs, then create_ticket", "auto")
    assert name == "search_docs"
    assert arguments == {"query": "sim", "limit": 10}  # 1 moved inside the bounds


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_forced_tool_is_called_whatever_the_message_names(
        oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, stream: bool) -> None:
    last = "Use get_weather."
    name, arguments, _ = await openai_call(oai, stream, last, {"type": "function",
                                                               "function": {"name": "create_ticket"}})
    assert (name, arguments) == ("create_ticket", EXPECTED_TICKET)
    name, arguments, _ = await anthropic_call(claude, stream, last, {"type": "tool", "name": "search_docs"})
    assert (name, arguments) == ("search_docs", {"query": "sim", "limit": 10})


async def test_streamed_arguments_arrive_one_key_per_delta(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="m", messages=openai_messages("create_ticket"),
                                               tools=OPENAI_TOOLS, tool_choice="auto", stream=True)
    pieces = [tc.function.arguments async for c in stream if c.choices
              for tc in c.choices[0].delta.tool_calls or [] if tc.function and tc.function.arguments]
    assert len(pieces) == 1 + len(EXPECTED_TICKET)  # `{"title": `, `"simxxxxx", "priority": `, ...
    assert json.loads("".join(pieces)) == EXPECTED_TICKET


async def test_auto_after_a_tool_result_answers_with_text(oai: openai.AsyncOpenAI,
                                                          claude: anthropic.AsyncAnthropic) -> None:
    # An agent loop run against the simulator ends: the tool's result comes back, the model answers.
    reply = await oai.chat.completions.create(model="m", tools=OPENAI_TOOLS, tool_choice="auto", messages=[
        {"role": "user", "content": "create_ticket please"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "create_ticket", "arguments": json.dumps(EXPECTED_TICKET)}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ticket 42"}])
    assert reply.choices[0].finish_reason == "stop" and reply.choices[0].message.content
    message = await claude.messages.create(model="m", max_tokens=100, tools=ANTHROPIC_TOOLS,
                                           tool_choice={"type": "auto"}, messages=[
        {"role": "user", "content": "create_ticket please"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "create_ticket",
                                           "input": EXPECTED_TICKET}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ticket 42"}]}])
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    # With required/any the model must call a tool again, as the real APIs do.
    again = await claude.messages.create(model="m", max_tokens=100, tools=ANTHROPIC_TOOLS,
                                         tool_choice={"type": "any"}, messages=[
        {"role": "user", "content": "create_ticket please"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "create_ticket",
                                           "input": EXPECTED_TICKET}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ticket 42"}]}])
    assert again.stop_reason == "tool_use"


async def test_none_and_absent_tool_choice_answer_with_text(sim: SimulatedProvider, oai: openai.AsyncOpenAI,
                                                            claude: anthropic.AsyncAnthropic) -> None:
    for choice in ("none", openai.omit):
        reply = await oai.chat.completions.create(model="m", messages=openai_messages("create_ticket"),
                                                  tools=OPENAI_TOOLS, tool_choice=choice)
        assert reply.choices[0].message.tool_calls is None and reply.choices[0].finish_reason == "stop"
    for anthropic_choice in ({"type": "none"}, anthropic.omit):
        message = await claude.messages.create(model="m", max_tokens=100, messages=anthropic_messages("get_weather"),
                                               tools=ANTHROPIC_TOOLS, tool_choice=anthropic_choice)
        assert message.stop_reason == "end_turn"
    assert sim.stats.completed == 4


async def test_tool_choice_without_tools_answers_with_text(oai: openai.AsyncOpenAI,
                                                           claude: anthropic.AsyncAnthropic) -> None:
    reply = await oai.chat.completions.create(model="m", messages=openai_messages("create_ticket"),
                                              tool_choice={"type": "function", "function": {"name": "create_ticket"}})
    assert reply.choices[0].message.tool_calls is None
    message = await claude.messages.create(model="m", max_tokens=100, messages=anthropic_messages("get_weather"),
                                           tool_choice={"type": "any"})
    assert message.stop_reason == "end_turn"
