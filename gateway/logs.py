"""Logging: JSON lines (the default for `gateway serve`) or plain text, and the one-line-per-request log.

Never logs a key or prompt text: the request log is built from the finished request's `RequestSummary` only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from gateway.engine import Hooks, RequestSummary

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
    """One log line per request, accepted or rejected: alias, winner, attempts, latency, cost, status, trace id."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("gateway.request")

    def request_finished(self, summary: RequestSummary) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        # Runs in the request's `finally`: an exception here (a record field of a type nothing expected, from
        # an upstream value) would escape the request. Hooks never raise.
        try:
            self._log(summary)
        except Exception:
            self.log.exception("request log line not written")

    def _log(self, summary: RequestSummary) -> None:
        winner = summary.winner
        fields: dict[str, Any] = {
            "request_id": summary.request_id, "alias": summary.alias, "door": str(summary.door),
            "endpoint": summary.endpoint, "stream": summary.stream,
            "status": summary.status, "winner": winner.target.label if winner else None,
            "attempts": [f"{a.target.label}:{a.outcome}" for a in summary.attempts],
            "hedged": summary.hedged,
            "latency_ms": round(summary.latency_s * 1000, 1),
            "ttft_ms": None if summary.ttft_s is None else round(summary.ttft_s * 1000, 1),
            "cost_usd": round(summary.cost_usd, 8), "wasted_cost_usd": round(summary.wasted_cost_usd, 8),
            "trace_id": f"{summary.trace_id:032x}",
        }
        if summary.error_type:
            fields["error_type"] = summary.error_type
        if summary.cache is not None:
            fields["cache"] = summary.cache
        self.log.info("request", extra=fields)
