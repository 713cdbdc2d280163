"""What a chat answer is besides plain `tok0 tok1 ...` text: a tool call or a structured (JSON) answer.

Both wire formats share these rules; each dialect only extracts its own fields (tools, tool choice, the last user
text, the answer schema) and calls them. Nothing here raises: whatever a gateway forwards gets an answer, since
a simulator that refused a request the real API would take would hide gateway bugs behind simulator ones.

Tool choice:
- none, or no tool_choice at all: a text answer. (Claude Code sends two dozen tools and no tool_choice; it must
  get text back, not a call of whichever tool comes first.)
- auto: the tool named in the last user message, else the first tool; but after a tool result, text, so an
  agent loop run against the simulator ends.
- required (OpenAI) / any (Anthropic): the tool named in the last user message, else the first tool.
- a named tool: that tool.
A tool is "named" when its exact name appears in the text as a word of its own; of several, the one named first.
Arguments are generated from the tool's JSON schema; a schema that says nothing about properties (`{"type":
"object"}`, or none) gets `{"query": "sim"}`, as the simulator always answered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.simulator.json_schema import example

# What a tool whose schema leaves its arguments open is called with: valid for any such schema.
OPEN_TOOL_ARGUMENTS = '{"query": "sim"}'
# The answer schema of OpenAI's `json_object` mode, which asks for some JSON object but says nothing of its shape.
JSON_OBJECT_SCHEMA: Mapping[str, object] = {
    "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
}
# Keywords that constrain an object's keys: a schema with none of them leaves the arguments open.
_SHAPE_KEYWORDS = frozenset({
    "properties", "required", "additionalProperties", "patternProperties", "propertyNames", "minProperties",
    "maxProperties", "$ref", "allOf", "anyOf", "oneOf", "not", "if", "const", "enum", "dependentRequired",
    "dependentSchemas", "unevaluatedProperties",
})
_NAME_CHARS = "A-Za-z0-9_-"  # what tool names are made of, in both APIs
_JSON_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s]+)|\s+")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    schema: object  # the arguments' JSON schema as sent (OpenAI `parameters`, Anthropic `input_schema`)


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # JSON text of an object
    pieces: tuple[str, ...]  # the arguments as streamed, one piece per delta: together they are `arguments`


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """A request's tools and what it says about calling them, in format-neutral terms."""

    tools: tuple[Tool, ...]
    choice: str | None  # "none", "auto", "required" (Anthropic "any"), "named", or None when not given
    named: str | None = None  # the tool a "named" choice names
    last_user_text: str = ""
    after_tool_result: bool = False  # the conversation's last message carries a tool result


def choose_tool(request: ToolRequest) -> ToolCall | None:
    """The tool call this request is answered with, or None for a text (or structured) answer."""
    if not request.tools:
        return None
    if request.choice == "named" and request.named is not None:
        chosen = next((t for t in request.tools if t.name == request.named), Tool(request.named, None))
        return tool_call(chosen)
    if request.choice not in ("auto", "required"):
        return None
    if request.choice == "auto" and request.after_tool_result:
        return None
    return tool_call(mentioned_tool(request.tools, request.last_user_text) or request.tools[0])


def mentioned_tool(tools: Sequence[Tool], text: str) -> Tool | None:
    """The tool whose name appears first in `text` as a word of its own (case-sensitive), if any."""
    best: tuple[int, Tool] | None = None
    for tool in tools:
        if not tool.name:
            continue
        found = re.search(rf"(?<![{_NAME_CHARS}]){re.escape(tool.name)}(?![{_NAME_CHARS}])", text)
        if found is not None and (best is None or found.start() < best[0]):
            best = (found.start(), tool)
    return None if best is None else best[1]


def tool_call(tool: Tool) -> ToolCall:
    arguments = OPEN_TOOL_ARGUMENTS
    if not _leaves_arguments_open(tool.schema):
        value = example(tool.schema)
        if isinstance(value, dict):  # both APIs only call tools with an object; a schema that is not one is open
            arguments = _to_json(value) or OPEN_TOOL_ARGUMENTS
    return ToolCall(tool.name, arguments, split_arguments(arguments))


def split_arguments(arguments: str) -> tuple[str, ...]:
    """Streamed tool arguments: a piece ends after each `": `, so each key arrives with its value still to come
    (`{"query": ` then `"sim"}`): clients must join the deltas, never parse one alone."""
    pieces: list[str] = []
    start = 0
    for found in re.finditer(r'": ', arguments):
        pieces.append(arguments[start:found.end()])
        start = found.end()
    if start < len(arguments):
        pieces.append(arguments[start:])
    return tuple(pieces)


def json_answer(schema: object) -> tuple[str, ...]:
    """A structured answer's text as output tokens: words, and runs of punctuation, each with the space before.

    One piece is one output token: streamed one per delta, counted in usage, cut short by max_tokens (leaving
    JSON that does not parse, as the real APIs do with finish reason length / stop reason max_tokens).
    """
    text = _to_json(example(schema)) or "{}"
    return tuple(_JSON_TOKEN.findall(text))


def _to_json(value: object) -> str | None:
    """JSON text in the `{"key": "value"}` spacing the simulator always used; None for a value too deep to write
    (a `const` nested hundreds of levels, which a fuzzer may send)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (RecursionError, ValueError):
        return None


def _leaves_arguments_open(schema: object) -> bool:
    if not isinstance(schema, Mapping):
        return True
    return schema.get("type", "object") == "object" and not _SHAPE_KEYWORDS.intersection(schema)


def text_of(content: object) -> str:
    """The text of a message's content: a string, or the `text` of its text parts/blocks (tool results left out)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(part["text"] for part in content
                     if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str))
