"""The Responses door's config: `responses: true` on OpenAI-kind providers, and the conversation store."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.providers import create_provider
from gateway.wire import WireFormat

ROOT = Path(__file__).resolve().parents[2]


def config(providers: dict[str, object], **extra: object) -> dict[str, object]:
    return {"providers": providers, "models": {"chat": {"targets": [{"provider": next(iter(providers)),
                                                                      "model": "m"}]}}, **extra}


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {})
    return str(info.value)


def test_an_openai_provider_marked_responses_speaks_it_at_its_own_url() -> None:
    parsed = parse_config(config({"o": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "responses": True},
                                  "p": {"kind": "openai", "base_url": "http://127.0.0.1:2/v1"}}), {})
    native, plain = create_provider(parsed.providers["o"]), create_provider(parsed.providers["p"])
    assert native.speaks == {WireFormat.OPENAI, WireFormat.RESPONSES} and plain.speaks == {WireFormat.OPENAI}
    assert native._urls["responses"] == "http://127.0.0.1:1/v1/responses"  # type: ignore[attr-defined]
    assert "responses" not in plain.operations


def test_responses_is_refused_where_it_cannot_hold_and_named() -> None:
    assert error_of(config({"a": {"kind": "anthropic", "base_url": "http://127.0.0.1:1", "responses": True}})) == (
        "providers.a.responses: only an openai provider can speak the Responses API (a is anthropic)")
    assert error_of(config({"o": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "responses": "yes"}})) == (
        "providers.o.responses: must be true or false, got 'yes'")
    # A wire format some providers also speak, not a kind of provider.
    assert error_of(config({"o": {"kind": "responses", "base_url": "http://127.0.0.1:1/v1"}})) == (
        "providers.o.kind: must be openai or anthropic, got 'responses'")


def test_the_conversation_store_limits() -> None:
    base = {"o": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}}
    parsed = parse_config(config(base, responses={"ttl_s": 60, "max_entries": 5, "max_mb": 1}), {})
    assert (parsed.responses.ttl_s, parsed.responses.max_entries, parsed.responses.max_bytes) == (60, 5, 1024 * 1024)
    assert parse_config(config(base), {}).responses.ttl_s == 3600
    assert error_of(config(base, responses={"ttl": 5})).startswith("responses.ttl: unknown key")
    assert error_of(config(base, responses={"max_entries": 0})) == "responses.max_entries: must be >= 1, got 0"


def test_the_example_marks_openai_as_a_responses_speaker() -> None:
    example = load_config(ROOT / "config" / "gateway.example.yaml", env={})
    assert example.providers["openai-main"].responses is True
    assert example.providers["anthropic-main"].responses is False
    assert example.responses.max_entries == 10_000
