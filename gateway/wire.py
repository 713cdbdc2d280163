"""Wire-level value types every layer shares: JSON bodies, wire formats, server-sent events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]


class WireFormat(enum.StrEnum):
    """A wire format: a client door speaks one, a provider kind speaks one."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    RESPONSES = "responses"  # OpenAI's Responses API: a door, and a format some OpenAI-kind providers also speak


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event with a JSON payload.

    `event` is the SSE `event:` name (Anthropic always sends one; OpenAI never does).
    OpenAI's `data: [DONE]` terminator is not an event: readers stop on it, writers add it.
    """

    data: Json
    event: str | None = None
