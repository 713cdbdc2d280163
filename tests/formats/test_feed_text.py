"""`Aggregator.feed_text` (an event the engine already found to be plain text) builds the same answer as `feed`.

The engine hands a same-format aggregator each event's plain text so the event is not looked at twice; these
streams mix text with every other kind of event, so an answer that differs by one field fails here.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.formats import responses as responses_format
from gateway.wire import Json, SSEEvent

_HEAD: Json = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741569952, "model": "gpt-4o",
               "system_fingerprint": "fp_1", "service_tier": "default"}


def _chunk(delta: Json, finish: str | None = None, usage: Json | None = None, **extra: object) -> SSEEvent:
    choice: Json = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
    return SSEEvent({**_HEAD, "choices": [choice], "usage": usage})


OPENAI = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hel"}),
    _chunk({"content": "lo"}, logprobs={"content": [{"token": "lo", "logprob": -0.1, "bytes": None,
                                                     "top_logprobs": []}]}),
    _chunk({"content": ""}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                            "function": {"name": "f", "arguments": "{\"a\""}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
    _chunk({"content": " world"}),
    _chunk({}, finish="tool_calls"),
    SSEEvent({**_HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
]
# Text before the answer has its id (a provider that sends the id late): read in full, as `feed` does.
OPENAI_LATE_ID = [SSEEvent({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]}),
                  *OPENAI]


def _delta(index: int, delta: Json) -> SSEEvent:
    return SSEEvent({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")


ANTHROPIC = [
    SSEEvent({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}},
        "message_start"),
    SSEEvent({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
             "content_block_start"),
    _delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
    _delta(0, {"type": "signature_delta", "signature": "sig"}),
    SSEEvent({"type": "content_block_stop", "index": 0}, "content_block_stop"),
    SSEEvent({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
             "content_block_start"),
    _delta(1, {"type": "text_delta", "text": "Hel"}),
    _delta(1, {"type": "text_delta", "text": ""}),
    _delta(1, {"type": "text_delta", "text": "lo"}),
    SSEEvent({"type": "content_block_stop", "index": 1}, "content_block_stop"),
    SSEEvent({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
              "usage": {"output_tokens": 4}}, "message_delta"),
    SSEEvent({"type": "message_stop"}, "message_stop"),
]

_RESPONSE: Json = {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4o", "status": "completed",
                   "output": [], "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}
_ITEM: Json = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}
RESPONSES = [
    SSEEvent({"type": "response.created", "response": {**_RESPONSE, "status": "in_progress"}}),
    SSEEvent({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Hel"}),
    SSEEvent({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "lo"}),
    SSEEvent({"type": "response.output_item.done", "output_index": 0, "item": _ITEM}),
    SSEEvent({"type": "response.completed", "response": _RESPONSE}),
]


def _both_ways(module: ModuleType, events: list[SSEEvent]) -> tuple[Json, Json, int]:
    by_feed, by_text = module.Aggregator(), module.Aggregator()
    texts = 0
    for ev in events:
        by_feed.feed(ev)
        text = module.plain_text(ev.data)
        if text is None:
            by_text.feed(ev)
        else:
            texts += 1
            by_text.feed_text(ev, text)
    return by_feed.result(), by_text.result(), texts


@pytest.mark.parametrize(("module", "events"), [
    (openai_format, OPENAI), (openai_format, OPENAI_LATE_ID), (anthropic_format, ANTHROPIC),
    (responses_format, RESPONSES)], ids=["openai", "openai-late-id", "anthropic", "responses"])
def test_feed_text_builds_the_answer_feed_builds(module: ModuleType, events: list[SSEEvent]) -> None:
    by_feed, by_text, texts = _both_ways(module, events)
    assert texts >= 2  # the stream does exercise feed_text
    assert by_text == by_feed


def test_the_openai_answer_keeps_the_text_and_logprobs_fed_as_text() -> None:
    answer, _, _ = _both_ways(openai_format, OPENAI)
    choice = answer["choices"][0]
    assert choice["message"]["content"] == "Hello world"
    assert [entry["token"] for entry in choice["logprobs"]["content"]] == ["lo"]


def test_a_broken_answer_stays_broken_through_feed_text() -> None:
    aggregator = openai_format.Aggregator()
    aggregator.feed(OPENAI[0])
    aggregator.feed(SSEEvent({**_HEAD, "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None,
                                                    "logprobs": {"content": 5}}]}))
    aggregator.feed_text(OPENAI[1], "Hel")
    with pytest.raises(Exception, match="malformed"):
        aggregator.result()
