"""Which targets can continue a stream from a prefilled assistant message, and the requests that do it.

Sources (checked 2026-11-28):
- Anthropic, "Prefill Claude's response": the final `assistant` message is continued where it ends; the prefill
  "cannot end with trailing whitespace" (an error); prefilling "is not currently supported with extended
  thinking".
- Anthropic migration guide (Claude 4.6): "Prefilling assistant messages returns a 400 error on Claude 4.6
  models" (Opus 4.6, Sonnet 4.6: "This model does not support assistant message prefill"). Later models are
  taken to refuse it too.
- OpenAI's Chat Completions API has no prefill. OpenAI-compatible servers that do: vLLM and Hugging Face chat
  templates (`continue_final_message: true` with `add_generation_prompt: false`), DeepSeek and Mistral
  (`prefix: true` on the final assistant message); llama.cpp refuses a prefill with thinking enabled.
  So an OpenAI-kind provider prefills only when its config says how (`providers.<name>.prefill`).
"""

from __future__ import annotations

import re

from gateway.config.model import ProviderConfig
from gateway.wire import Json, WireFormat

# claude-opus-4-6, claude-sonnet-4-6-20260101, anthropic.claude-opus-4-6-v1, claude-haiku-5...
_CLAUDE_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2})(?!\d))?")
_FIRST_REFUSING = (4, 6)


def model_refuses_prefill(model: str) -> bool:
    """Whether a Claude model is known to refuse a trailing assistant message (Claude 4.6 and later)."""
    match = _CLAUDE_VERSION.search(model)
    if match is None:
        return False
    major = int(match.group(1))
    minor = int(match.group(2)) if match.group(2) is not None else 0
    return (major, minor) >= _FIRST_REFUSING


def _thinking_on(body: Json) -> bool:
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        return True
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort not in ("none", "minimal"):
        return True
    kwargs = body.get("chat_template_kwargs")
    return isinstance(kwargs, dict) and kwargs.get("enable_thinking") is True


def prefill_style(config: ProviderConfig, upstream: WireFormat, model: str, body: Json) -> str | None:
    """How this target continues a prefill for the client's `body`: "anthropic", "continue_final_message",
    "prefix", or None when it cannot (then it is no resume target)."""
    if _thinking_on(body):
        return None
    style = config.prefill
    if style == "off":
        return None
    if upstream is WireFormat.ANTHROPIC:
        return None if model_refuses_prefill(model) and style is None else "anthropic"
    return style  # an OpenAI-compatible server continues an assistant message only when declared


def prefilled_body(body: Json, door: WireFormat, text: str, *, max_tokens_used: int) -> Json | None:
    """The client's `body` (in its door's format) asking for the continuation of `text`: the text as a final
    assistant message (joined to the client's own prefill, if its last message was one), the output limit
    lowered by what was already generated. None when the client's last assistant turn cannot be extended."""
    messages = list(body.get("messages") or ())
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant" and door is WireFormat.ANTHROPIC:
        own = _text_only(last.get("content"))
        if own is None:
            return None
        messages[-1] = {"role": "assistant", "content": own + text}
    else:
        messages.append({"role": "assistant", "content": text})
    out = {**body, "messages": messages}
    for key in ("max_tokens", "max_completion_tokens"):
        limit = body.get(key)
        if type(limit) is int and limit > 0:
            out[key] = max(1, limit - max_tokens_used)
    return out


def _text_only(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in content):
        return "".join(str(b.get("text") or "") for b in content)
    return None


def split_trailing_whitespace(text: str, style: str) -> tuple[str, str]:
    """(the prefill to send, the whitespace it left out): Anthropic refuses a prefill ending in whitespace."""
    if style != "anthropic":
        return text, ""
    kept = text.rstrip()
    return kept, text[len(kept):]


def mark_upstream(upstream: Json, style: str) -> Json:
    """The upstream body with the provider's own prefill switch (none for Anthropic, where it is native)."""
    if style == "continue_final_message":
        return {**upstream, "continue_final_message": True, "add_generation_prompt": False}
    if style == "prefix":
        messages = list(upstream.get("messages") or ())
        if messages and isinstance(messages[-1], dict):
            messages[-1] = {**messages[-1], "prefix": True}
        return {**upstream, "messages": messages}
    return upstream
