"""Client speaks the OpenAI Responses API, provider speaks OpenAI Chat Completions.

`translate_request` turns a Responses body (its input already expanded by the gateway: no
`previous_response_id` reaches a translation) into a streaming chat.completions body; `chat_request` does the
same and also says which Responses input item each chat message came from, so the Anthropic pair (which goes
on from this chat body) can name the client's field in its errors. `ChatChunksToResponses` turns the
`chat.completion.chunk` stream back into Responses events.

Mapped: instructions -> a first system message; input string -> a user message; message items (input_text,
input_image by URL, input_file inline or by id, output_text and refusal parts of assistant turns) -> messages;
function_call items -> assistant tool_calls (consecutive calls, and the assistant text just before them, in
one message); function_call_output -> role "tool" messages; function tools, tool_choice (auto, none, required,
a named function, allowed_tools), parallel_tool_calls; text.format json_schema / json_object ->
response_format; text.verbosity -> verbosity; max_output_tokens -> max_completion_tokens; reasoning.effort ->
reasoning_effort; temperature, top_p, user, safety_identifier, prompt_cache_key, service_tier as they are.

Dropped: reasoning items (chat completions has no way to replay them), metadata (chat keeps it only for stored
completions), store, include, truncation, stream_options, reasoning.summary, top_logprobs, `phase`, `status`
and `id` of input items.

Refused with a 400 naming the field (the target is then skipped): built-in tools (web_search, file_search,
computer use, code interpreter, MCP, image generation, shell, custom tools), their call items, item
references, images by file id, `prompt` templates, and tool_choice of a built-in tool.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError
from gateway.formats import token_count
from gateway.formats.responses_events import ResponseStreamBuilder, usage_body
from gateway.wire import Json, SSEEvent

# Passed on to chat completions under the same name.
_SAME_NAME = ("temperature", "top_p", "user", "safety_identifier", "prompt_cache_key", "service_tier")
# What a chat finish reason says about the response: None is a complete answer, else why it is incomplete.
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def untranslatable(param: str, problem: str) -> GatewayError:
    # The client's own paths (`input[2].content[0].file_id`, `tools[1].type`), as the Responses door writes them.
    return GatewayError(400, f"{param}: {problem}", type="invalid_request_error", param=param)


# ---------------------------------------------------------------------------------------------- request


def translate_request(body: Json, *, model: str) -> Json:
    """The chat.completions body (streaming, with usage) for a Responses `body`. Never mutates `body`."""
    return chat_request(body, model=model)[0]


def chat_request(body: Json, *, model: str) -> tuple[Json, list[str]]:
    """(chat body, the Responses path each of its messages came from)."""
    if body.get("prompt") is not None:
        raise untranslatable("prompt", "prompt templates are stored by OpenAI and cannot be sent to chat completions")
    messages, origins = _messages(body)
    out: Json = {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    for key in _SAME_NAME:
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = body["max_output_tokens"]
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str):
        out["reasoning_effort"] = effort
    text = body.get("text") or {}
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]
    response_format = _response_format(text.get("format"))
    if response_format is not None:
        out["response_format"] = response_format
    tools = body.get("tools")
    if tools:  # chat completions rejects tool_choice and parallel_tool_calls without tools
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
        # "auto" is the Responses default; said explicitly, every provider (and simulator) reads it alike.
        out["tool_choice"] = _tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else "auto"
        if body.get("parallel_tool_calls") is not None:
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    return out, origins


def _messages(body: Json) -> tuple[list[Json], list[str]]:
    messages: list[Json] = []
    origins: list[str] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
        origins.append("instructions")
    data = body.get("input")
    if isinstance(data, str):
        messages.append({"role": "user", "content": data})
        origins.append("input")
        return messages, origins
    for i, item in enumerate(data or ()):
        path = f"input[{i}]"
        kind = item.get("type") or "message"
        if kind == "message":
            messages.append(_message(item, path))
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # one assistant turn: its text, then its calls
                continue
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                             "content": _tool_output(item.get("output"), f"{path}.output")})
        elif kind == "reasoning":
            continue  # chat completions has no field to replay reasoning into
        else:
            raise untranslatable(f"{path}.type", f"{kind!r} items cannot be sent to chat completions")
        origins.append(path)
    return messages, origins


def _message(item: Json, path: str) -> Json:
    role = item.get("role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role == "assistant":
        texts = [str(part.get("text") or part.get("refusal") or "") for part in content or ()]
        return {"role": "assistant", "content": "".join(texts)}
    parts = [_part(part, f"{path}.content[{j}]") for j, part in enumerate(content or ())]
    if role in ("system", "developer"):
        # Chat completions takes only text in system turns; images there are not something any model reads.
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Json, path: str) -> Json:
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "input_image":
        if not part.get("image_url"):
            raise untranslatable(f"{path}.file_id", "images by file id cannot be sent to chat completions; "
                                 "send the image_url (a URL or a data URL)")
        image: Json = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {key: part[key] for key in ("file_data", "file_id", "filename") if part.get(key)}
        if not file.get("file_data") and not file.get("file_id"):
            raise untranslatable(path, "files must be sent as file_data or file_id to reach chat completions")
        return {"type": "file", "file": file}
    raise untranslatable(f"{path}.type", f"{kind!r} content cannot be sent to chat completions")


def _tool_output(output: Any, path: str) -> str | list[Json]:
    if isinstance(output, str):
        return output
    # Tool messages take text parts only: other parts of an output have no place there.
    texts = []
    for j, part in enumerate(output or ()):
        if part.get("type") not in ("input_text", "output_text"):
            raise untranslatable(f"{path}[{j}].type", "only text tool outputs can be sent to chat completions")
        texts.append({"type": "text", "text": part.get("text") or ""})
    return texts


def _tool(tool: Json, path: str) -> Json:
    if tool.get("type") != "function":
        raise untranslatable(f"{path}.type", f"built-in tool {tool.get('type')!r} cannot be sent to chat "
                             "completions: only function tools can")
    function: Json = {"name": tool.get("name"),
                      "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    for key in ("description", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> str | Json:
    if isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind == "allowed_tools":
        tools = [_allowed(tool, f"tool_choice.tools[{i}]") for i, tool in enumerate(choice.get("tools") or ())]
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode"), "tools": tools}}
    raise untranslatable("tool_choice.type", f"{kind!r} cannot be sent to chat completions")


def _allowed(tool: Json, path: str) -> Json:
    if tool.get("type") != "function":
        raise untranslatable(f"{path}.type", "only function tools can be allowed through chat completions")
    return {"type": "function", "function": {"name": tool.get("name")}}


def _response_format(fmt: Any) -> Json | None:
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    spec = {key: fmt[key] for key in ("name", "schema", "strict", "description") if fmt.get(key) is not None}
    return {"type": "json_schema", "json_schema": spec}


# ----------------------------------------------------------------------------------------------- stream


class ChatChunksToResponses:
    """OpenAI `chat.completion.chunk` payloads in, Responses events out.

    The usage chunk comes after the finish chunk, while Responses puts both in the terminal event: so the end
    waits for the usage chunk, or for `finish()` when the provider sent none. Only choice 0 is translated.
    """

    __slots__ = ("_builder", "_incomplete", "_reason", "_usage")

    def __init__(self) -> None:
        self._builder = ResponseStreamBuilder()
        self._reason: str | None = None  # the finish reason, once it came
        self._incomplete: str | None = None
        self._usage: Json | None = None

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        builder = self._builder
        if builder.finished:
            return []
        data = ev.data
        if "error" in data:
            error = data.get("error") or {}
            return builder.error(str(error.get("code") or error.get("type") or "server_error"),
                                 str(error.get("message") or ""))
        if not builder.model and data.get("model"):
            builder.model = str(data["model"])
        out = builder.start()
        for choice in data.get("choices") or ():
            if choice.get("index", 0) == 0:
                self._choice(choice, out)
        if (usage := data.get("usage")) and type(usage) is dict:
            self._usage = usage
        if self._reason is not None and self._usage is not None:
            out += self._end()
        return out

    def finish(self) -> list[SSEEvent]:
        return self._end() if self._builder.started else []

    def _choice(self, choice: Json, out: list[SSEEvent]) -> None:
        builder = self._builder
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            out += builder.reasoning(reasoning)
        if delta.get("content"):
            out += builder.text(delta["content"])
        if delta.get("refusal"):
            out += builder.refusal(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            key = call.get("index", 0)
            function = call.get("function") or {}
            if call.get("id") or function.get("name"):
                out += builder.tool_call(key, str(call.get("id") or ""), str(function.get("name") or ""))
            out += builder.tool_arguments(key, function.get("arguments") or "")
        if choice.get("finish_reason"):
            self._reason = choice["finish_reason"]
            self._incomplete = INCOMPLETE.get(self._reason)

    def _end(self) -> list[SSEEvent]:
        usage = self._usage
        body = None
        if usage is not None:
            # Provider numbers: only plausible counts (see `token_count`); anything else is 0, as if missing.
            prompt_details, details = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
            body = usage_body(token_count(usage.get("prompt_tokens")) or 0,
                              token_count(usage.get("completion_tokens")) or 0,
                              (token_count(prompt_details.get("cached_tokens"))
                               if type(prompt_details) is dict else None) or 0,
                              (token_count(details.get("reasoning_tokens")) if type(details) is dict else None) or 0)
        return self._builder.finish(usage=body, incomplete=self._incomplete)
