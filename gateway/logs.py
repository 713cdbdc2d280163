"""Logging: JSON lines (the default for `gateway serve`) or plain text, and the one-line-per-request log.

Never logs a key or prompt text: the request log is built from the finished request's `RequestSummary` only.

The request log writes a line per request, so its cost is on the request path: the line is made without the
logging module's caller lookup (`RequestLog` hands the logger a ready record), formatted once, and written
with the lines around it (`BatchingStreamHandler`) rather than in one system call each.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import IO, Any

import orjson

from gateway.engine import Hooks, RequestSummary

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
PIPE_BUF = 4096  # writes up to this size to a pipe are atomic: workers sharing stderr never split a line


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once per second, not per line
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        line: dict[str, Any] = {
            "ts": f"{self._second_text}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes INFO and below in batches, WARNING and above at once.

    On a running event loop, lines below WARNING wait at most `interval_s` (a timer armed by the first line
    of a batch), or until `PIPE_BUF` bytes are pending; each write is at most `PIPE_BUF` bytes of whole lines,
    so `--workers N` sharing one stderr pipe never interleave parts of lines. A WARNING or worse writes what
    is pending and itself at once; so do `flush()` and `close()` (called by `logging.shutdown` at exit: no
    line is lost when the gateway stops). Off an event loop (start-up, CLI commands, other threads) every
    line is written at once, as by `logging.StreamHandler`.
    """

    def __init__(self, stream: IO[str] | None = None, *, interval_s: float = 0.1) -> None:
        super().__init__(stream)
        self.interval_s = interval_s
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held (Handler.handle)
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if self._pending_bytes + len(line) > PIPE_BUF:
            self._write_pending(record)
        self._pending.append(line)
        self._pending_bytes += len(line)  # characters: bytes for the ASCII of a JSON line
        if record.levelno >= logging.WARNING:
            self._write_pending(record)
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write_pending(record)
                return
            self._timer = loop.call_later(self.interval_s, self._on_timer)

    def _on_timer(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._timer = None
            self._write_pending(None)

    def _write_pending(self, record: logging.LogRecord | None) -> None:
        if not self._pending:
            return
        data = "".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            self.stream.write(data)
            self.stream.flush()
        except Exception:
            if record is not None:
                self.handleError(record)
            elif logging.raiseExceptions:
                sys.stderr.write("gateway.logs: a batch of log lines could not be written\n")

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending(None)
        super().flush()

    def close(self) -> None:
        self.flush()  # a timer still armed finds nothing left to write
        super().close()


def make_handler(fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """The handler `setup_logging` installs: JSON lines or plain text, batched, to `stream` (stderr)."""
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(fmt)]
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
        if summary.key_name is not None:
            fields["key_name"] = summary.key_name
        # As `self.log.info("request", extra=fields)` does, without looking up the caller's frame (no format
        # the gateway installs shows it).
        log = self.log
        log.handle(log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None, extra=fields))
