"""Claude Code as a client: the shape of its requests, and how to run the real CLI (tests/e2e/test_claude_code.py).

The body below is what Claude Code 2.1.332 sends for a model name it does not know (`--model claude`), captured
against the gateway on 127.0.0.1 with the texts shortened (the real body is 50-110 KB and carries its whole
system prompt): a `role: "system"` turn inside messages, cache_control on blocks, thinking, context_management,
output_config.effort and a JSON string as metadata.user_id.
"""

from __future__ import annotations

from typing import Any

CLAUDE_CODE_BODY: Any = {
    "model": "claude", "max_tokens": 32000, "stream": True,
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332"},
               {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
               {"type": "text", "text": "You are an agent working with the user.",
                "cache_control": {"type": "ephemeral"}}],
    # The system turn comes last, after the prompt: messages[1], where the door used to stop it.
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>...</system-reminder>"},
                                     {"type": "text", "text": "say hi"}]},
        {"role": "system", "content": [{"type": "text", "text": "# Environment\n - Platform: linux",
                                        "cache_control": {"type": "ephemeral"}}]},
    ],
    "tools": [{"name": "Bash", "description": "Run a command",
               "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                                "properties": {"command": {"type": "string"}}, "required": ["command"],
                                "additionalProperties": False}}],
    "metadata": {"user_id": '{"device_id":"5182da94","account_uuid":"","session_id":"bc907188"}'},
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
}
