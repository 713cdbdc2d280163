"""What Claude Code sends (see /work/shared/notes/clients.md) is accepted, and the simulator records what it received
so a gateway test can assert what reached the upstream: path with query, headers (secrets redacted), body."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import pytest

from gateway.simulator import SimProfile, SimulatedProvider, key_fingerprint
from gateway.simulator.stats import KEEP_REQUESTS

BETAS = ("claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,"
         "context-management-2025-06-27,prompt-caching-scope-2026-01-05,mid-conversation-system-2026-04-07,"
         "effort-2025-11-24")
CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01", "anthropic-beta": BETAS, "x-app": "cli",
    "X-Claude-Code-Session-Id": "5f0c1c9e-sim", "anthropic-dangerous-direct-browser-access": "true",
    "User-Agent": "claude-cli/2.1.0 (external, cli)", "X-Stainless-Lang": "js", "x-api-key": "sk-ant-cc-secret",
}
TOOL_NAMES = ["Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit", "Write",
              "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput", "KillShell", "Skill",
              "SlashCommand", "AskUserQuestion", "EnterPlanMode", "ListMcpResources", "ReadMcpResource", "Agent",
              "Monitor"]


def claude_code_body(thinking: dict[str, Any]) -> dict[str, Any]:
    """The shape of Claude Code's request for a model name it does not know (a system turn at messages[1])."""
    cache = {"type": "ephemeral"}
    return {
        "model": "gw-alias",
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                   {"type": "text", "text": "Instructions. " * 200, "cache_control": cache},
                   {"type": "text", "text": "Environment: linux", "cache_control": cache}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>context</system-reminder>"}]},
            {"role": "system", "content": "Mid-conversation system turn."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello, then stop.", "cache_control": cache}]},
        ],
        "tools": [{"name": name, "description": f"The {name} tool. " * 220, "input_schema": {
            "type": "object", "properties": {"arg": {"type": "string", "description": "an argument"}},
            "required": ["arg"], "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}
            for name in TOOL_NAMES],
        "metadata": {"user_id": json.dumps({"device_id": "abc", "session_id": "5f0c1c9e-sim"})},
        "max_tokens": 32000,
        "thinking": thinking,
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": True,
    }


@pytest.mark.parametrize("thinking", [{"type": "adaptive"}, {"type": "enabled", "budget_tokens": 31999}],
                         ids=["adaptive", "enabled"])
async def test_claude_code_request_is_answered_with_text_and_recorded(sim: SimulatedProvider,
                                                                      thinking: dict[str, Any]) -> None:
    body = claude_code_body(thinking)
    assert len(json.dumps(body)) > 76_000  # Claude Code's are 76-116 KB
    async with aiohttp.ClientSession() as http, http.post(sim.base_url + "/v1/messages?beta=true", json=body,
                                                          headers=CLAUDE_CODE_HEADERS) as resp:
        assert resp.status == 200
        text = (await resp.read()).decode()
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    # Two dozen tools and no tool_choice: text, never a call of the first tool.
    assert {e["content_block"]["type"] for e in events if e["type"] == "content_block_start"} == {"text"}
    assert sim.stats.completed == 1

    seen = sim.stats.recent[-1]
    assert seen["route"] == "messages" and seen["path"] == "/v1/messages?beta=true"
    assert seen["body"] == body
    headers = seen["headers"]
    assert headers["anthropic-beta"] == BETAS and headers["anthropic-version"] == "2023-06-01"
    assert headers["x-app"] == "cli" and headers["user-agent"].startswith("claude-cli/")
    assert headers["x-api-key"] == key_fingerprint("sk-ant-cc-secret")
    assert "sk-ant-cc-secret" not in repr(sim.stats.recent)


async def test_the_sdk_beta_door_with_thinking_and_a_system_turn(sim: SimulatedProvider,
                                                                 claude: anthropic.AsyncAnthropic) -> None:
    messages: Any = [{"role": "user", "content": "hi"}, {"role": "system", "content": "Be terse."},
                     {"role": "user", "content": "again"}]
    async with claude.beta.messages.stream(
            model="m", max_tokens=32000, messages=messages, betas=["interleaved-thinking-2025-05-14"],
            thinking={"type": "enabled", "budget_tokens": 31999}, metadata={"user_id": "u-1"},
            context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "tok0 tok1 tok2 tok3 tok4" and final.stop_reason == "end_turn"
    # The system turn's text counts like any other: "hi" + "Be terse." + "again" = 16 characters -> 4 tokens.
    assert final.usage.input_tokens == 4
    seen = sim.stats.recent[-1]
    assert seen["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert seen["body"]["messages"][1] == {"role": "system", "content": "Be terse."}


async def test_recent_requests_keep_the_last_few_oldest_first(sim: SimulatedProvider) -> None:
    async with aiohttp.ClientSession() as http:
        for i in range(KEEP_REQUESTS + 3):
            body = {"model": f"m{i}", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(sim.base_url + "/v1/messages", json=body,
                                 headers={"anthropic-version": "2023-06-01"}) as resp:
                assert resp.status == 200
        async with http.get(sim.base_url + "/_sim/requests") as resp:
            shown = await resp.json()
        assert [r["body"]["model"] for r in shown["requests"]] == [f"m{i}" for i in range(3, KEEP_REQUESTS + 3)]
        assert shown["name"] == "fixture-sim"
        assert sim.stats.received_by_route == {"messages": KEEP_REQUESTS + 3}
        async with http.post(sim.base_url + "/_sim/reset") as resp:
            assert (await resp.json())["received_by_route"] == {}
        async with http.get(sim.base_url + "/_sim/requests") as resp:
            assert (await resp.json())["requests"] == []


async def test_refused_requests_are_recorded_too(sim: SimulatedProvider) -> None:
    # A test asserting what the upstream received must see requests the upstream refused as well.
    sim.profile = SimProfile(require_key="sk-right")
    async with aiohttp.ClientSession() as http, http.post(
            sim.base_url + "/v1/messages/count_tokens", data=b"{not json",
            headers={"Authorization": "Bearer sk-wrong", "anthropic-beta": "b1"}) as resp:
        assert resp.status == 401
    seen = sim.stats.recent[-1]
    assert (seen["route"], seen["body"]) == ("count_tokens", None)
    assert seen["headers"]["authorization"] == key_fingerprint("sk-wrong") and seen["headers"]["anthropic-beta"] == "b1"
