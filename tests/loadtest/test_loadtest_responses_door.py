"""Sending a scenario's traffic through the Responses door: the same schedule, another door."""

from __future__ import annotations

import orjson
import pytest

from loadtest.__main__ import SCENARIOS_DIR, apply_overrides
from loadtest.client import request_body, request_path
from loadtest.scenario import ScenarioError, load_scenario, parse_scenario
from loadtest.schedule import build_schedule
from tests.loadtest.test_loadtest_scenario import _with


def test_forcing_a_door_moves_nothing_else_in_the_schedule() -> None:
    scenario = load_scenario(SCENARIOS_DIR / "heavy-tail.yaml")
    mixed = build_schedule(scenario.traffic, scenario.seed)
    forced = apply_overrides(scenario, duration_s=None, rate=None, policies=None, door="responses")
    through = build_schedule(forced.traffic, forced.seed)
    assert {req.door for req in mixed} == {"openai", "anthropic"} and {req.door for req in through} == {"responses"}
    assert [(r.at_s, r.stream, r.prompt_tokens, r.max_tokens) for r in mixed] == [
        (r.at_s, r.stream, r.prompt_tokens, r.max_tokens) for r in through]


def test_a_responses_request_body() -> None:
    scenario = apply_overrides(load_scenario(SCENARIOS_DIR / "tiny.yaml"), duration_s=None, rate=None,
                               policies=None, door="responses")
    req = next(r for r in build_schedule(scenario.traffic, scenario.seed) if r.stream)
    body = orjson.loads(request_body("chat", req))
    assert request_path("responses") == "/v1/responses"
    assert body["stream"] is True and body["input"].startswith("tok ") and body["max_output_tokens"] >= 16
    assert "messages" not in body and "stream_options" not in body


def test_the_door_is_checked_and_named() -> None:
    assert parse_scenario(_with("traffic.door", "responses")).traffic.door == "responses"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_with("traffic.door", "grpc"))
    assert str(info.value) == "traffic.door: must be one of openai, anthropic, responses, got 'grpc'"
