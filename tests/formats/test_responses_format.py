"""The Responses wire format: what `inspect` makes of provider events, aggregation, the event builder, replay."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.formats import NOTHING, EventInfo
from gateway.formats.responses import Aggregator, error_event, inspect, validate_request
from gateway.formats.responses_events import ResponseStreamBuilder, replay
from gateway.wire import SSEEvent


def ev(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(data, data.get("type"))


def ids() -> Any:
    counter = iter(range(1000))
    return lambda prefix: f"{prefix}_{next(counter)}"


def test_inspect_commits_on_generated_output_only() -> None:
    assert inspect(ev({"type": "response.created", "response": {}})) is NOTHING
    assert inspect(ev({"type": "response.output_item.added", "item": {"type": "message"}})) is NOTHING
    assert inspect(ev({"type": "response.output_item.added", "item": {"type": "reasoning"}})) is NOTHING
    assert inspect(ev({"type": "response.output_text.delta", "delta": ""})) is NOTHING
    for kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                 "response.reasoning_text.delta", "response.reasoning_summary_text.delta", "response.refusal.delta"):
        assert inspect(ev({"type": kind, "delta": "x"})) == EventInfo(content=True, text="x")
    # A call the model decided to make is output as it opens, like a chat tool call's first delta.
    call = inspect(ev({"type": "response.output_item.added", "item": {"type": "function_call", "name": "f"}}))
    assert call.content and call.text == "f"


def test_inspect_reads_usage_and_the_end_from_the_terminal_event() -> None:
    usage = {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 7}
    done = inspect(ev({"type": "response.completed", "response": {"status": "completed", "usage": usage}}))
    assert (done.input_tokens, done.cached_input_tokens, done.output_tokens) == (120, 100, 7)
    assert done.end and done.finish_reason == "completed"
    cut = inspect(ev({"type": "response.incomplete", "response": {
        "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}}))
    assert cut.end and cut.finish_reason == "max_output_tokens" and cut.input_tokens is None


def test_inspect_reports_failures_in_either_shape() -> None:
    failed = inspect(ev({"type": "response.failed", "response": {"error": {"code": "server_error",
                                                                            "message": "boom"}}}))
    assert failed.error == ("server_error", "boom")
    assert inspect(ev({"type": "error", "code": "rate_limit_exceeded", "message": "slow"})).error == (
        "rate_limit_exceeded", "slow")
    assert inspect(ev({"type": "error", "error": {"type": "overloaded", "message": "x"}})).error == ("overloaded", "x")


def test_error_event_is_the_apis_error_event() -> None:
    event = error_event(GatewayError(502, "upstream broke", type="api_error"))
    assert event.event == "error" and event.data["type"] == "error"
    assert event.data["message"] == "upstream broke" and event.data["code"] == "api_error"


def test_the_builder_makes_a_stream_the_sdk_accepts_and_the_aggregator_rebuilds_it() -> None:
    builder = ResponseStreamBuilder(make_id=ids(), model="m")
    events = builder.text("Hel") + builder.text("lo") + builder.tool_call(0, "call_a", "f")
    events += builder.tool_call(1, "call_b", "g") + builder.tool_arguments(0, '{"a":') + builder.tool_arguments(1, "{}")
    events += builder.tool_arguments(0, " 1}") + builder.finish(usage={"input_tokens": 3, "output_tokens": 4})
    types = [e.data["type"] for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-1] == "response.completed"
    assert [e.data["sequence_number"] for e in events] == list(range(len(events)))
    # Every delta after its item was added, every item done before the end, each item one output index.
    added = {e.data["output_index"]: i for i, e in enumerate(events) if e.data["type"] == "response.output_item.added"}
    done = {e.data["output_index"]: i for i, e in enumerate(events) if e.data["type"] == "response.output_item.done"}
    assert sorted(added) == sorted(done) == [0, 1, 2] and all(added[k] < done[k] for k in added)
    aggregator = Aggregator()
    for event in events:
        aggregator.feed(event)
    body = aggregator.result()
    assert [item["type"] for item in body["output"]] == ["message", "function_call", "function_call"]
    assert body["output"][0]["content"][0]["text"] == "Hello"
    assert [(c["call_id"], c["arguments"]) for c in body["output"][1:]] == [("call_a", '{"a": 1}'), ("call_b", "{}")]
    assert body["usage"] == {"input_tokens": 3, "output_tokens": 4} and body["status"] == "completed"


def test_an_incomplete_answer_ends_with_response_incomplete() -> None:
    builder = ResponseStreamBuilder(make_id=ids())
    events = builder.reasoning("hmm") + builder.text("par") + builder.finish(usage=None, incomplete="max_output_tokens")
    assert events[-1].data["type"] == "response.incomplete"
    assert events[-1].data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["type"] for item in events[-1].data["response"]["output"]] == ["reasoning", "message"]


def test_replay_streams_a_stored_answer_back_to_the_same_body() -> None:
    body = {"id": "resp_1", "object": "response", "created_at": 5, "status": "completed", "model": "m",
            "instructions": "be brief", "usage": {"input_tokens": 1, "output_tokens": 2},
            "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}]},
                       {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}",
                        "status": "completed"},
                       {"type": "web_search_call", "id": "ws_1", "status": "completed"}]}
    events = replay(body)
    assert events[0].data["response"]["instructions"] == "be brief"
    aggregator = Aggregator()
    for event in events:
        aggregator.feed(event)
    again = aggregator.result()
    assert again["id"] == "resp_1" and again["usage"] == body["usage"]
    assert [item["type"] for item in again["output"]] == ["message", "function_call", "web_search_call"]
    assert again["output"][0]["content"][0]["text"] == "hi" and again["output"][1]["arguments"] == "{}"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m"}, "input"),
    ({"model": "m", "input": 5}, "input"),
    ({"model": "m", "input": [], "instructions": "be brief"}, "input"),  # nothing to answer (fuzz-found)
    ({"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
    ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input[0].content[0].image_url"),
    ({"model": "m", "input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"model": "m", "input": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
])
def test_validation_names_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as info:
        validate_request(body)
    assert info.value.status == 400 and info.value.param == param


def test_validation_lets_what_a_native_provider_judges_through() -> None:
    body = {"model": "m", "input": [{"type": "web_search_call", "id": "ws"}, {"type": "item_reference", "id": "x"}],
            "tools": [{"type": "file_search", "vector_store_ids": ["vs"]}], "tool_choice": {"type": "file_search"},
            "previous_response_id": "resp_1", "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k"}
    assert validate_request(body) is body
    assert validate_request({"model": "m", "previous_response_id": "resp_1"})  # the input may all be stored
    assert validate_request({"model": "m", "previous_response_id": "resp_1", "input": []})


def test_provider_garbage_never_breaks_the_responses_framing_or_its_counts() -> None:
    """Regressions: a native provider's events pass through this codec; garbage in them is a provider fault
    (ProviderError), never a broken frame, a crash, or an untrusted count."""
    import pytest

    from gateway.errors import ProviderError
    from gateway.formats import responses
    from gateway.wire import SSEEvent

    framed = responses.encode_event(SSEEvent({"type": "a\ninjected: 1", "x": 1}))
    assert framed.startswith(b"event: message\ndata: ") and framed.count(b"\n\n") == 1
    assert responses.encode_event(SSEEvent({"type": 7})).startswith(b"event: message\n")
    deep: dict[str, object] = {}
    node = deep
    for _ in range(300):
        node["a"] = node = {}
    with pytest.raises(ProviderError):
        responses.encode_event(SSEEvent({"type": "response.output_text.delta", "deep": deep}))
    done = {"type": "response.completed", "response": {"status": "completed", "output": [],
                                                        "usage": {"input_tokens": "12", "output_tokens": 1e300,
                                                                  "input_tokens_details": {"cached_tokens": -5}}}}
    info = responses.inspect(SSEEvent(done))
    assert (info.input_tokens, info.output_tokens, info.cached_input_tokens) == (None, None, None) and info.end
    aggregator = responses.Aggregator()
    aggregator.feed(SSEEvent({"type": "response.output_item.done", "output_index": [1], "item": {"type": "x"}}))
    aggregator.feed(SSEEvent({"type": "response.output_item.done", "output_index": "0", "item": {"type": "y"}}))
    aggregator.feed(SSEEvent(done))
    assert aggregator.result()["output"] == []  # items without a usable index are left out, never a TypeError
