"""The OpenAI format's `Aggregator`: a complete `chat.completion` body rebuilt from a provider's chunks.

The gateway always streams from providers, so a client that asked for one JSON answer gets it from here. A
provider's chunks may hold anything (see `gateway.formats.guard`): a field of the wrong type that the answer
would copy is ignored or read as its default where that is unambiguous (a choice's `index`, the answer's id
or model); anything else that stops the answer from being assembled marks it broken, and `result()` raises
`ProviderError` for it rather than letting a TypeError escape the request.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import ProviderError
from gateway.formats import token_count
from gateway.formats.guard import malformed_answer, whole_answer
from gateway.wire import Json, SSEEvent

__all__ = ["Aggregator", "plain_text"]


def plain_text(data: Json) -> str | None:
    """The text of a chunk that is one choice's text delta and nothing else (no role, finish, usage, error):
    nearly every chunk of a stream. For such a chunk `gateway.formats.openai.inspect` is `content_info(text)`
    (NOTHING for ""), so the engine counts it without calling `inspect`, and the aggregator reads only what
    it can change; None for every other chunk."""
    choices = data.get("choices")
    if type(choices) is list and len(choices) == 1 and data.get("usage") is None and "error" not in data:
        choice = choices[0]
        if type(choice) is dict and choice.get("finish_reason") is None:
            delta = choice.get("delta")
            if type(delta) is dict and len(delta) == 1:
                text = delta.get("content")
                if type(text) is str:
                    return text
    return None


class _Choice:
    """The pieces of one choice, collected as lists and joined once at the end."""

    __slots__ = ("content", "finish_reason", "function_call", "logprobs", "refusal", "tool_calls")

    def __init__(self) -> None:
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, _ToolCall] = {}
        self.function_call: _ToolCall | None = None
        self.finish_reason: str | None = None
        self.logprobs: list[Any] | None = None


class _ToolCall:
    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = "function"
        self.name = ""
        self.arguments: list[str] = []

    def feed(self, call: Json) -> None:
        if (call_id := call.get("id")) and type(call_id) is str:
            self.id = call_id
        if (call_type := call.get("type")) and type(call_type) is str:
            self.type = call_type
        function = call.get("function") or call  # a legacy function_call delta holds name/arguments itself
        if (name := function.get("name")) and type(name) is str:
            self.name += name  # sent once in practice; some providers split it, so append
        if (arguments := function.get("arguments")) and type(arguments) is str:
            self.arguments.append(arguments)


class Aggregator:
    """Builds the complete non-streaming `chat.completion` body from a provider's chunks."""

    def __init__(self) -> None:
        self._id = ""
        self._created = 0
        self._model = ""
        self._system_fingerprint: str | None = None
        self._service_tier: str | None = None
        self._usage: Json | None = None
        self._choices: dict[int, _Choice] = {}
        self._broken: str | None = None  # why the answer cannot be assembled

    def feed(self, ev: SSEEvent) -> None:
        if self._broken is not None:
            return
        try:
            text = plain_text(ev.data)
            if text is None or not (self._id and self._created):
                self._feed(ev.data)
                return
        except Exception as exc:  # a field of a type nothing here can read: the answer cannot be assembled
            self._broken = f"{type(exc).__name__} in a chunk"
            return
        self.feed_text(ev, text)

    def feed_text(self, ev: SSEEvent, text: str) -> None:
        """`feed` of a plain text chunk (one choice, its delta only `content`, no finish, usage or error: nearly
        every chunk): once the answer has its id, only what such a chunk can change is looked at. The body
        repeats `_feed`'s lines for these fields in place, on purpose: a Python call is ~400 instructions, and
        helpers shared by both paths (three calls per event, 19 events) cost 1.2% of a request (measured
        2026-12-03 with docs/measure_instructions.sh)."""
        if self._broken is not None:
            return
        data = ev.data
        try:
            if not (self._id and self._created):
                self._feed(data)
                return
            if (model := data.get("model")) and type(model) is str:
                self._model = model
            if (fingerprint := data.get("system_fingerprint")) and type(fingerprint) is str:
                self._system_fingerprint = fingerprint
            if (service_tier := data.get("service_tier")) and type(service_tier) is str:
                self._service_tier = service_tier
            choice = data["choices"][0]
            index = choice.get("index", 0)
            if type(index) is not int:
                index = 0
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
            if text:
                state.content.append(text)
            logprobs = choice.get("logprobs")
            if logprobs and logprobs.get("content"):
                if state.logprobs is None:
                    state.logprobs = []
                state.logprobs.extend(logprobs["content"])
        except Exception as exc:  # as in `feed`
            self._broken = f"{type(exc).__name__} in a chunk"

    def _feed(self, data: Json) -> None:
        if data.get("error"):
            return  # the engine reads errors through inspect(); they are not part of the answer
        # Copied into the answer as they are: only values of the type the answer has.
        if not self._id and (chunk_id := data.get("id")) and type(chunk_id) is str:
            self._id = chunk_id
        if not self._created and (created := data.get("created")) and type(created) is int:
            self._created = created
        if (model := data.get("model")) and type(model) is str:
            self._model = model
        if (fingerprint := data.get("system_fingerprint")) and type(fingerprint) is str:
            self._system_fingerprint = fingerprint
        if (service_tier := data.get("service_tier")) and type(service_tier) is str:
            self._service_tier = service_tier
        if (usage := data.get("usage")) and type(usage) is dict:
            self._usage = usage
        for choice in data.get("choices") or ():
            self._feed_choice(choice)

    def _feed_choice(self, choice: Json) -> None:
        index = choice.get("index", 0)
        if type(index) is not int:
            index = 0  # the gateway asks for one choice (n=1): a choice without a usable index is that one
        state = self._choices.get(index)
        if state is None:
            state = self._choices[index] = _Choice()
        delta = choice.get("delta") or {}
        if content := delta.get("content"):
            state.content.append(content)
        if refusal := delta.get("refusal"):
            state.refusal.append(refusal)
        for call in delta.get("tool_calls") or ():
            # Some OpenAI-compatible providers omit `index`: a call with a new id starts a new slot.
            call_index = call.get("index")
            if type(call_index) is not int:  # missing (or not an index): placed by its id, as below
                known = max(state.tool_calls, default=-1)
                starts_new = known < 0 or (call.get("id") and call["id"] != state.tool_calls[known].id)
                call_index = known + 1 if starts_new else known
            slot = state.tool_calls.get(call_index)
            if slot is None:
                slot = state.tool_calls[call_index] = _ToolCall()
            slot.feed(call)
        if function_call := delta.get("function_call"):
            if state.function_call is None:
                state.function_call = _ToolCall()
            state.function_call.feed(function_call)
        if (reason := choice.get("finish_reason")) and type(reason) is str:
            state.finish_reason = reason
        logprobs = choice.get("logprobs")
        if logprobs and logprobs.get("content"):
            if state.logprobs is None:
                state.logprobs = []
            state.logprobs.extend(logprobs["content"])

    def result(self) -> Json:
        """The answer; ProviderError if the chunks could not be assembled into one."""
        if self._broken is not None:
            raise malformed_answer(self._broken)
        try:
            return whole_answer(self._result())
        except ProviderError:
            raise
        except Exception as exc:  # e.g. a piece of text that was not one
            raise malformed_answer(type(exc).__name__) from None

    def _result(self) -> Json:
        choices = [self._choice_body(index, self._choices[index]) for index in sorted(self._choices)]
        if not choices:
            choices = [self._choice_body(0, _Choice())]
        body: Json = {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": choices,
            "usage": self._usage_body(),
        }
        if self._system_fingerprint is not None:
            body["system_fingerprint"] = self._system_fingerprint
        if self._service_tier is not None:
            body["service_tier"] = self._service_tier
        return body

    @staticmethod
    def _choice_body(index: int, state: _Choice) -> Json:
        text = "".join(state.content)
        refusal = "".join(state.refusal) or None
        has_calls = bool(state.tool_calls) or state.function_call is not None
        message: Json = {
            "role": "assistant",
            # Like the API: no text next to tool calls or a refusal is null, not "".
            "content": text if text or not (has_calls or refusal) else None,
            "refusal": refusal,
        }
        if state.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{call_index}",
                    "type": call.type,
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for call_index, call in sorted(state.tool_calls.items())
            ]
        if state.function_call is not None:
            message["function_call"] = {
                "name": state.function_call.name,
                "arguments": "".join(state.function_call.arguments),
            }
        finish_reason = state.finish_reason or ("tool_calls" if state.tool_calls else "stop")
        return {
            "index": index,
            "message": message,
            "finish_reason": finish_reason,
            "logprobs": {"content": state.logprobs, "refusal": None} if state.logprobs else None,
        }

    def _usage_body(self) -> Json | None:
        # None when the provider sent no usage chunk: zeros would be a wrong count, not a missing one.
        usage = self._usage
        if usage is None:
            return None
        # Counts as `inspect` reads them (a count that is not one is 0 here, as a missing one is), so the client's
        # usage is never a string, negative or absurd, and the total adds up when the provider's does not parse.
        prompt = token_count(usage.get("prompt_tokens")) or 0
        completion = token_count(usage.get("completion_tokens")) or 0
        details = usage.get("prompt_tokens_details")
        details = details if type(details) is dict else {}
        body: Json = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": token_count(usage.get("total_tokens")) or prompt + completion,
            "prompt_tokens_details": {**details,
                                      "cached_tokens": token_count(details.get("cached_tokens")) or 0},
        }
        if (completion_details := usage.get("completion_tokens_details")) and type(completion_details) is dict:
            body["completion_tokens_details"] = completion_details
        return body
