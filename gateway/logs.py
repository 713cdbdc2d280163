"""Logging: JSON lines (the default for `gateway serve`) or plain text, and the one-line-per-request log.

Never logs a key or prompt text: the request log is built from the engine's `RequestRecord` only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from gateway.engine.hooks import Hooks, RequestRecord

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RequestLog(Hooks):
    """One log line per request: alias, winner, attempts, latency, cost, status, trace id."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("gateway.request")

    def request_finished(self, record: RequestRecord) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        # Runs in the request's `finally`: an exception here (a record field of a type nothing expected, from
        # an upstream value) would escape the request and answer aiohttp's plain-text 500. Hooks never raise.
        try:
            self._log(record)
        except Exception:
            self.log.exception("request log line not written")

    def _log(self, record: RequestRecord) -> None:
        winner = record.winner
        fields: dict[str, Any] = {
            "alias": record.route.alias, "door": str(record.door), "stream": record.stream,
            "status": record.status, "winner": winner.target.label if winner else None,
            "attempts": [f"{a.target.label}:{a.outcome}" for a in record.attempts],
            "hedged": record.hedged,
            "latency_ms": None if record.latency_s is None else round(record.latency_s * 1000, 1),
            "ttft_ms": None if record.ttft_s is None else round(record.ttft_s * 1000, 1),
            "cost_usd": round(record.cost_usd, 8), "wasted_cost_usd": round(record.wasted_cost_usd, 8),
        }
        if record.error_type:
            fields["error_type"] = record.error_type
        trace_id = _trace_id(record.context)
        if trace_id:
            fields["trace_id"] = trace_id
        self.log.info("request", extra=fields)


def _trace_id(context: object) -> str | None:
    span = getattr(context, "span", context)  # the telemetry layer keeps the request span there
    get = getattr(span, "get_span_context", None)
    if get is None:
        return None
    trace_id = get().trace_id
    return f"{trace_id:032x}" if trace_id else None
