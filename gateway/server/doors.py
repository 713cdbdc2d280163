"""The two front doors as data: which wire-format module renders a door's bodies, events and errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.formats import Aggregator
from gateway.formats import anthropic as anthropic_format
from gateway.formats import openai as openai_format
from gateway.wire import Json, SSEEvent, WireFormat


@dataclass(frozen=True, slots=True)
class Door:
    format: WireFormat
    validate_request: Callable[[object], Json]
    encode_event: Callable[[SSEEvent], bytes]
    stream_end: bytes
    error_body: Callable[[GatewayError], Json]
    error_event: Callable[[GatewayError], SSEEvent]
    wants_usage: Callable[[Json], bool]
    is_usage_only: Callable[[SSEEvent], bool]
    aggregator: Callable[[], Aggregator]


OPENAI_DOOR = Door(WireFormat.OPENAI, openai_format.validate_request, openai_format.encode_event,
                   openai_format.STREAM_END, openai_format.error_body, openai_format.error_event,
                   openai_format.wants_usage, openai_format.is_usage_only, openai_format.Aggregator)
ANTHROPIC_DOOR = Door(WireFormat.ANTHROPIC, anthropic_format.validate_request, anthropic_format.encode_event,
                      anthropic_format.STREAM_END, anthropic_format.error_body, anthropic_format.error_event,
                      anthropic_format.wants_usage, anthropic_format.is_usage_only, anthropic_format.Aggregator)


def door_for_path(path: str) -> Door:
    return ANTHROPIC_DOOR if path.startswith("/v1/messages") else OPENAI_DOOR
