"""What the HTTP handler hands to telemetry about an incoming request, before the engine starts on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.wire import Json


@dataclass(slots=True, frozen=True)
class IncomingRequest:
    """Put in `RequestRecord.context` by the handler; `TelemetryHooks.request_started` replaces it with its span.

    Holds references only (no parsing), so a gateway without telemetry pays for one small object. `headers`
    carries the W3C `traceparent`/`tracestate`; `body` is read only when content capture is switched on.
    """

    headers: Mapping[str, str]
    body: Json
