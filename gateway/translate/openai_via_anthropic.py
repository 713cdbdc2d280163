"""Client speaks OpenAI Chat Completions, provider speaks Anthropic Messages.

`translate_request` turns a chat.completions body into a streaming Messages body;
`AnthropicStreamToChatChunks` turns the Messages event stream back into `chat.completion.chunk`s.

Request fields dropped because Anthropic has no equivalent: frequency_penalty, presence_penalty, logit_bias,
logprobs, top_logprobs, seed, n (when 1), store, metadata (OpenAI's stored-completion tags), service_tier,
prediction, prompt_cache_key, prompt_cache_options, prompt_cache_retention, reasoning_effort, verbosity,
web_search_options, moderation, stream_options, audio, modalities (when text only), response_format text /
json_object (json_schema becomes `output_config.format`), message `name`s, image `detail`,
`prompt_cache_breakpoint`s, file `filename`s, and tool_choice / parallel_tool_calls when there are no tools.

temperature and top_p are dropped too unless the caller passes `send_sampling_params=True`: Anthropic API version
2026-10-21 (what anthropic SDK >= 2.0 sends) rejects them at any value, as do Claude models from Opus 4.7 on under
2023-06-01, so forwarding them would turn common OpenAI requests into 400s.

System and developer messages are all gathered into the top-level `system`, in order, wherever they sat: every
API version takes a top-level system, while `role: "system"` turns inside messages need version 2026-10-21 or the
mid-conversation-system beta, which a provider configured for 2023-06-01 does not get.

What cannot be expressed raises a 400 `GatewayError` naming the field: no user or assistant message with
content (system messages alone), n > 1, audio input or output, legacy
`functions`/`function_call`, custom tools, `allowed_tools` tool choice, files by `file_id` or not PDF, image URLs
neither http(s) nor base64 data of a type Anthropic takes, tool-call arguments that are not a JSON object.

Stream: thinking, redacted_thinking and server-tool blocks, citations and signatures are not forwarded
(chat.completion.chunk has no field for them); `stop_sequence` (which sequence matched) is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import GatewayError, known_error_type
from gateway.formats import token_count
from gateway.wire import Json, SSEEvent

_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _untranslatable(param: str, problem: str) -> GatewayError:
    return GatewayError(400, f"{param}: {problem}", type="invalid_request_error", param=param)


# ---------------------------------------------------------------------------------------------- request


def translate_request(body: Json, *, model: str, default_max_tokens: int,
                      send_sampling_params: bool = False) -> Json:
    """The Anthropic Messages body (always streaming) for an OpenAI chat.completions `body`.

    Builds new containers and never mutates `body`; unchanged leaves (strings, JSON schemas) are shared.
    """
    _reject_inexpressible(body)
    system, messages = _messages(body.get("messages") or [])
    if not messages:
        # OpenAI answers a conversation of system messages alone; Anthropic needs a turn to answer (its 400 would
        # end the request, where this lets the hedge go on to an OpenAI target).
        raise _untranslatable("messages", "Anthropic needs at least one user or assistant message with content")
    out: Json = {"model": model, "messages": messages, "max_tokens": _max_tokens(body, default_max_tokens),
                 "stream": True}
    if system is not None:
        out["system"] = system
    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = list(stop)
    if send_sampling_params:
        temperature = body.get("temperature")
        if temperature is not None:
            # OpenAI's range is 0..2, Anthropic's 0..1.
            out["temperature"] = min(max(float(temperature), 0.0), 1.0)
        if body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
        # Anthropic rejects tool_choice on a request without tools.
        tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if tool_choice is not None:
            out["tool_choice"] = tool_choice
    output_format = _output_format(body.get("response_format"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    return out


def _reject_inexpressible(body: Json) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise _untranslatable("n", "Anthropic generates a single choice; n must be 1")
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise _untranslatable(legacy, "legacy function calling cannot be sent to Anthropic; use tools")
    if "audio" in (body.get("modalities") or ()):
        raise _untranslatable("modalities", "Anthropic cannot produce audio")


def _max_tokens(body: Json, default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            return int(value)
    return default


def _messages(raw: list[Json]) -> tuple[str | list[Json] | None, list[Json]]:
    """(top-level system, Anthropic messages) with tool results folded into user turns."""
    system: list[Json] = []
    turns: list[Json] = []
    for i, msg in enumerate(raw):
        role = msg.get("role")
        path = f"messages[{i}]"
        content: str | list[Json]
        if role in ("system", "developer"):
            system.extend(_text_blocks(msg.get("content"), f"{path}.content"))
            continue
        if role == "user":
            content = _user_content(msg.get("content"), f"{path}.content")
        elif role == "assistant":
            content = _assistant_content(msg, path)
        elif role == "tool":
            role, content = "user", [_tool_result(msg, path)]
        else:
            raise _untranslatable(f"{path}.role", f"role {role!r} cannot be sent to Anthropic")
        if content:  # Anthropic rejects empty content
            _append_turn(turns, role, content)
    if not system:
        return None, turns
    # One text block says exactly what a plain string says; keep the common case a string.
    return (system[0]["text"] if len(system) == 1 else system), turns


def _append_turn(turns: list[Json], role: str, content: str | list[Json]) -> None:
    # Anthropic wants user/assistant alternation: consecutive same-role turns (e.g. several tool results,
    # or tool results followed by the user's next question) become one turn.
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] = _as_blocks(turns[-1]["content"]) + _as_blocks(content)
    else:
        turns.append({"role": role, "content": content})


def _as_blocks(content: str | list[Json]) -> list[Json]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _text_blocks(content: Any, path: str) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[Json] = []
    for j, part in enumerate(content or ()):
        if part.get("type") != "text":
            raise _untranslatable(f"{path}[{j}].type", "only text parts are allowed here")
        if part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _user_content(content: Any, path: str) -> str | list[Json]:
    if isinstance(content, str):
        return content
    blocks: list[Json] = []
    for j, part in enumerate(content or ()):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{path}[{j}].image_url"))
        elif kind == "file":
            blocks.append(_document_block(part.get("file") or {}, f"{path}[{j}].file"))
        else:
            raise _untranslatable(f"{path}[{j}].type", f"{kind!r} content cannot be sent to Anthropic")
    return blocks


def _split_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of a `data:<type>;base64,<payload>` URL, else None."""
    if not url.startswith("data:"):
        return None
    header, comma, payload = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    return (media_type, payload) if comma and encoding == "base64" else None


def _image_block(image_url: Any, path: str) -> Json:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    parsed = _split_data_url(url) if isinstance(url, str) else None
    if parsed is None or parsed[0] not in _IMAGE_MEDIA_TYPES:
        raise _untranslatable(f"{path}.url", "Anthropic takes http(s) URLs or base64 data URLs of "
                              "image/jpeg, image/png, image/gif or image/webp")
    return {"type": "image", "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]}}


def _document_block(file: Json, path: str) -> Json:
    data = file.get("file_data")
    if not isinstance(data, str):
        raise _untranslatable(path, "files must be sent inline as file_data; file_id cannot reach Anthropic")
    if data.startswith("data:"):
        parsed = _split_data_url(data)
        if parsed is None or parsed[0] != "application/pdf":
            raise _untranslatable(f"{path}.file_data", "Anthropic takes inline files only as base64 PDF")
        data = parsed[1]
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}}


def _assistant_content(msg: Json, path: str) -> str | list[Json]:
    content = msg.get("content")
    calls = msg.get("tool_calls")
    if msg.get("function_call") is not None:
        raise _untranslatable(f"{path}.function_call", "legacy function calls cannot be sent to Anthropic")
    if isinstance(content, str) and not calls:
        return content
    blocks = _as_blocks(content) if isinstance(content, str) else []
    if isinstance(content, list):
        # Text and refusal parts both carry text the model said.
        blocks += [{"type": "text", "text": part.get("text") or part.get("refusal")}
                   for part in content if part.get("text") or part.get("refusal")]
    blocks = [block for block in blocks if block["text"]]
    for j, call in enumerate(calls or ()):
        call_path = f"{path}.tool_calls[{j}]"
        if call.get("type", "function") != "function":
            raise _untranslatable(f"{call_path}.type", "only function tool calls can be sent to Anthropic")
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": _arguments(function.get("arguments"), f"{call_path}.function.arguments")})
    return blocks


def _arguments(arguments: Any, path: str) -> Json:
    # OpenAI carries arguments as a JSON string; Anthropic wants the object itself.
    if not arguments or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        parsed = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        parsed = None
    if not isinstance(parsed, dict):
        raise _untranslatable(path, "must be a JSON object to be sent to Anthropic")
    return parsed


def _tool_result(msg: Json, path: str) -> Json:
    result: Json = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    else:
        blocks = _text_blocks(content, f"{path}.content")
        if blocks:
            result["content"] = blocks
    return result


def _tool(tool: Json, path: str) -> Json:
    if tool.get("type") != "function":
        raise _untranslatable(f"{path}.type", "only function tools can be sent to Anthropic")
    function = tool.get("function") or {}
    # A function without parameters takes no arguments; Anthropic still requires an object schema.
    out: Json = {"name": function.get("name"),
                 "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
    if function.get("description"):
        out["description"] = function["description"]
    if isinstance(function.get("strict"), bool):
        out["strict"] = function["strict"]
    return out


def _tool_choice(choice: Any, parallel_tool_calls: Any) -> Json | None:
    result: Json | None
    if choice is None:
        result = None
    elif choice in ("auto", "none"):
        result = {"type": choice}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        result = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise _untranslatable("tool_choice", "only auto, none, required or a named function can be "
                              "sent to Anthropic")
    if parallel_tool_calls is False:
        if result is None:
            result = {"type": "auto"}
        if result["type"] != "none":  # "none" takes no flag: no tools, nothing to parallelise
            result["disable_parallel_tool_use"] = True
    return result


def _output_format(response_format: Any) -> Json | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    return {"type": "json_schema", "schema": schema} if isinstance(schema, dict) else None


# ----------------------------------------------------------------------------------------------- stream


class AnthropicStreamToChatChunks:
    """Anthropic Messages stream events in, OpenAI `chat.completion.chunk` payloads out.

    Always ends with a usage-only chunk (`choices: []`) after the finish chunk: the door drops it when the
    client did not ask for `stream_options.include_usage`.
    """

    __slots__ = ("_cache_creation", "_cache_read", "_clock", "_created", "_id", "_input_tokens", "_model",
                 "_tool_by_block")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # wall clock: `created` is a Unix timestamp
        self._id = "chatcmpl-"
        self._created = 0
        self._model = ""
        self._tool_by_block: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self._input_tokens = 0
        self._cache_read = 0
        self._cache_creation = 0

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        data = ev.data
        kind = data.get("type")
        if kind == "content_block_delta":  # by far the most frequent: test it first
            return self._block_delta(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "message_start":
            return self._message_start(data.get("message") or {})
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "error":
            # The engine ends the attempt on an error event before translating it; if one ever got through,
            # its type is still a known word (it is free text from upstream).
            error = data.get("error")
            error = error if type(error) is dict else {}
            return [SSEEvent({"error": {"message": error.get("message", ""),
                                        "type": known_error_type(error.get("type")) or "api_error",
                                        "param": None, "code": None}})]
        return []  # ping, content_block_stop, message_stop, and event types added after this was written

    def finish(self) -> list[SSEEvent]:
        return []  # the finish and usage chunks went out on message_delta; the door writes [DONE]

    def _chunk(self, delta: Json, finish_reason: str | None = None) -> SSEEvent:
        return SSEEvent({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                         "model": self._model,
                         "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish_reason}]})

    def _message_start(self, message: Json) -> list[SSEEvent]:
        self._id = "chatcmpl-" + str(message.get("id", ""))
        self._model = str(message.get("model", ""))
        self._created = int(self._clock())
        self._take_input_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _take_input_usage(self, usage: object) -> None:
        # message_start reports the prompt side; newer API versions repeat it (cumulative) on message_delta.
        # Only real counts (see `token_count`): anything else is as if missing, as the engine reads it.
        if type(usage) is not dict:
            return
        if (count := token_count(usage.get("input_tokens"))) is not None:
            self._input_tokens = count
        if (count := token_count(usage.get("cache_read_input_tokens"))) is not None:
            self._cache_read = count
        if (count := token_count(usage.get("cache_creation_input_tokens"))) is not None:
            self._cache_creation = count

    def _block_start(self, data: Json) -> list[SSEEvent]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind != "tool_use":
            return []  # thinking and server-tool blocks have no chat.completion.chunk form
        tool_index = len(self._tool_by_block)
        self._tool_by_block[data.get("index", -1)] = tool_index
        # Anthropic opens a tool_use block with `input: {}` and streams the JSON as deltas.
        initial = block.get("input")
        arguments = orjson.dumps(initial).decode() if initial else ""
        return [self._chunk({"tool_calls": [{"index": tool_index, "id": block.get("id"), "type": "function",
                                             "function": {"name": block.get("name"),
                                                          "arguments": arguments}}]})]

    def _block_delta(self, data: Json) -> list[SSEEvent]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "input_json_delta":
            partial = delta.get("partial_json")
            tool_index = self._tool_by_block.get(data.get("index", -1))
            if partial and tool_index is not None:
                return [self._chunk({"tool_calls": [{"index": tool_index,
                                                     "function": {"arguments": partial}}]})]
        return []  # empty partials, thinking/signature/citations deltas

    def _message_delta(self, data: Json) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is not None:
            out.append(self._chunk({}, FINISH_REASONS.get(stop_reason, "stop")))
        usage = data.get("usage")
        self._take_input_usage(usage)
        # OpenAI's prompt_tokens counts every input token; Anthropic splits off the cached ones.
        prompt = self._input_tokens + self._cache_read + self._cache_creation
        completion = (token_count(usage.get("output_tokens")) if type(usage) is dict else None) or 0
        out.append(SSEEvent({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                             "model": self._model, "choices": [],
                             "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                       "total_tokens": prompt + completion,
                                       "prompt_tokens_details": {"cached_tokens": self._cache_read}}}))
        return out
