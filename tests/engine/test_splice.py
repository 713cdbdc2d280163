"""The splicers and prefill rules as pure functions: what a resume sends, and how its events are rewritten."""

from __future__ import annotations

import pytest

from gateway.config.load import parse_config
from gateway.config.model import ProviderConfig
from gateway.engine.prefill import model_refuses_prefill, prefill_style, prefilled_body, split_trailing_whitespace
from gateway.engine.splice import AnthropicSplicer, OpenAISplicer, _Whitespace
from gateway.wire import SSEEvent, WireFormat


def chunk(delta: dict[str, object], *, id: str = "chatcmpl-1", finish: str | None = None) -> SSEEvent:
    return SSEEvent({"id": id, "created": 1, "model": "m1", "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def ev(data: dict[str, object]) -> SSEEvent:
    return SSEEvent(data, str(data["type"]))


def test_openai_continuation_loses_its_role_chunk_and_takes_the_first_id_and_summed_usage() -> None:
    s = OpenAISplicer()
    s.see([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello "})])
    assert s.cut().text == "Hello " and s.cut().refusal is None
    s.begin(10, 3, "")
    out = s.splice([chunk({"role": "assistant", "content": ""}, id="other"), chunk({"content": "world"}, id="other"),
                    chunk({}, id="other", finish="length"),
                    SSEEvent({"id": "other", "created": 9, "model": "m2", "choices": [],
                              "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}})])
    assert [e.data["id"] for e in out] == ["chatcmpl-1"] * 3
    assert out[0].data["choices"][0]["delta"] == {"content": "world"}
    assert out[1].data["choices"][0]["finish_reason"] == "length"
    assert out[2].data["usage"] == {"prompt_tokens": 22, "completion_tokens": 5, "total_tokens": 27}
    assert s.cut().refusal == "finished"


@pytest.mark.parametrize(("delta", "refusal"), [({"tool_calls": [{"index": 0, "id": "c"}]}, "tool_call"),
                                                 ({"reasoning_content": "hmm"}, "thinking"),
                                                 ({"refusal": "no"}, "refusal")])
def test_openai_cuts_that_cannot_be_resumed(delta: dict[str, object], refusal: str) -> None:
    s = OpenAISplicer()
    s.see([chunk({"content": "a"}), chunk(delta)])
    assert s.cut().refusal == refusal


def test_openai_reasoning_then_text_is_resumable() -> None:
    s = OpenAISplicer()
    s.see([chunk({"reasoning_content": "hmm"}), chunk({"content": "Yes"})])
    assert s.cut().refusal is None and s.cut().text == "Yes"


def test_anthropic_continuation_goes_on_in_the_open_text_block() -> None:
    s = AnthropicSplicer()
    s.see([ev({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5}}}),
           ev({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
           ev({"type": "content_block_stop", "index": 0}),
           ev({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
           ev({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi "}})])
    assert s.cut().text == "Hi " and s.cut().refusal is None
    s.begin(5, 2, " ")
    out = s.splice([
        ev({"type": "message_start", "message": {"id": "msg_2", "usage": {"input_tokens": 7}}}),
        ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ev({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
        ev({"type": "content_block_stop", "index": 0}),
        ev({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f",
                                                                          "input": {}}}),
        ev({"type": "content_block_stop", "index": 1}),
        ev({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
        ev({"type": "message_stop"})])
    assert [(e.data["type"], e.data.get("index")) for e in out] == [
        ("content_block_delta", 1), ("content_block_stop", 1), ("content_block_start", 2),
        ("content_block_stop", 2), ("message_delta", None), ("message_stop", None)]
    assert out[0].data["delta"]["text"] == "there"  # the space the prefill lost is not repeated
    assert out[4].data["usage"] == {"output_tokens": 6, "input_tokens": 12}


@pytest.mark.parametrize(("block", "refusal"), [("thinking", "thinking"), ("tool_use", "tool_call")])
def test_anthropic_cut_inside_a_block_that_is_not_text(block: str, refusal: str) -> None:
    s = AnthropicSplicer()
    s.see([ev({"type": "content_block_start", "index": 0, "content_block": {"type": block}})])
    assert s.cut().refusal == refusal
    s.see([ev({"type": "content_block_stop", "index": 0})])
    assert s.cut().refusal == (None if block == "thinking" else "after_tool_call")


@pytest.mark.parametrize(("pending", "pieces", "expected"), [
    (" ", [" world"], "world"), (" ", ["world"], "world"), ("\n\n", ["\n", "\nX"], "X"),
    ("  ", [" x"], "x"), (" ", ["", " a"], "a")])
def test_whitespace_the_prefill_lost_is_dropped_only_as_far_as_it_repeats(
        pending: str, pieces: list[str], expected: str) -> None:
    ws = _Whitespace(pending)
    assert "".join(ws.take(p) for p in pieces) == expected


def test_split_trailing_whitespace_only_for_anthropic() -> None:
    assert split_trailing_whitespace("Hi there \n", "anthropic") == ("Hi there", " \n")
    assert split_trailing_whitespace("Hi there ", "continue_final_message") == ("Hi there ", "")


@pytest.mark.parametrize(("model", "refuses"), [
    ("claude-sonnet-4-5", False), ("claude-sonnet-4-5-20250929", False), ("claude-3-5-haiku-20241022", False),
    ("claude-opus-4-6", True), ("claude-sonnet-4-6", True), ("anthropic.claude-opus-4-6-v1", True),
    ("claude-opus-4-7", True), ("claude-haiku-5", True), ("claude-opus-4-20250514", False), ("gpt-4o", False)])
def test_models_known_to_refuse_a_prefill(model: str, refuses: bool) -> None:
    assert model_refuses_prefill(model) is refuses


def test_prefill_style_by_provider_kind_and_request() -> None:
    openai = ProviderConfig(name="o", kind=WireFormat.OPENAI, base_url="http://127.0.0.1:1")
    anthropic = ProviderConfig(name="a", kind=WireFormat.ANTHROPIC, base_url="http://127.0.0.1:1")
    assert prefill_style(openai, WireFormat.OPENAI, "m", {}) is None
    declared = ProviderConfig(name="o", kind=WireFormat.OPENAI, base_url="http://127.0.0.1:1", prefill="prefix")
    assert prefill_style(declared, WireFormat.OPENAI, "m", {}) == "prefix"
    assert prefill_style(anthropic, WireFormat.ANTHROPIC, "claude-sonnet-4-5", {}) == "anthropic"
    assert prefill_style(anthropic, WireFormat.ANTHROPIC, "claude-sonnet-4-6", {}) is None
    assert prefill_style(anthropic, WireFormat.ANTHROPIC, "m", {"thinking": {"type": "adaptive"}}) is None
    assert prefill_style(declared, WireFormat.OPENAI, "m", {"reasoning_effort": "high"}) is None


def test_prefilled_body_joins_the_clients_own_prefill_and_lowers_the_limit() -> None:
    body = {"model": "x", "max_tokens": 50, "messages": [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "{"}]}
    out = prefilled_body(body, WireFormat.ANTHROPIC, '"a": 1', max_tokens_used=10)
    assert out is not None and out["messages"][-1] == {"role": "assistant", "content": '{"a": 1'}
    assert out["max_tokens"] == 40 and body["max_tokens"] == 50  # the client's body is never changed
    openai = prefilled_body({"messages": [{"role": "user", "content": "q"}]}, WireFormat.OPENAI, "Hi",
                            max_tokens_used=3)
    assert openai is not None and openai["messages"][-1] == {"role": "assistant", "content": "Hi"}


def _config(model: dict[str, object], provider: dict[str, object] | None = None) -> object:
    return parse_config({"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1", **(provider or {})}},
                         "models": {"m": {"targets": [{"provider": "p", "model": "x"}], **model}}}, {})


def test_config_resume_stall_and_prefill() -> None:
    cfg = parse_config({"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1", "prefill": True}},
                        "models": {"m": {"targets": [{"provider": "p", "model": "x"}], "resume": True,
                                         "stream_stall_ms": 1500}}}, {})
    route = cfg.models["m"]
    assert route.resume_max == 1 and route.stream_stall_ms == 1500
    assert cfg.providers["p"].prefill == "continue_final_message"
    cfg = parse_config({"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1"}},
                        "models": {"m": {"targets": [{"provider": "p", "model": "x"}], "resume": {"max": 3}}}}, {})
    assert cfg.models["m"].resume_max == 3 and cfg.providers["p"].prefill is None
    cfg = parse_config({"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:1"}},
                        "models": {"m": {"targets": [{"provider": "p", "model": "x"}]}}}, {})
    assert cfg.models["m"].resume_max == 0 and not cfg.models["m"].resumes


@pytest.mark.parametrize(("model", "provider", "message"), [
    ({"resume": "sometimes"}, None, "models.m.resume"), ({"resume": {"maximum": 2}}, None, "models.m.resume"),
    ({"stream_stall_ms": 0}, None, "models.m.stream_stall_ms"), ({}, {"prefill": "yes"}, "providers.p.prefill")])
def test_config_errors_name_the_field(model: dict[str, object], provider: dict[str, object] | None,
                                      message: str) -> None:
    from gateway.config.load import ConfigError
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _config(model, provider)
