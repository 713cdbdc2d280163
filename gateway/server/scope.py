"""`RequestScope`: one client request from the door to its last byte, and its bookkeeping, written once.

Every path a request can take (rejected at the door, answered from the cache, joined to an identical request
in flight, raced) runs inside one scope. The scope owns the request's `RequestRecord`: it counts the request
in flight, marks it 499 when the client leaves before an answer was written, refunds or corrects the rate
limiter's token reservation with what the winner really used, and reports the finished request, frozen, to
the hooks: after the last byte was written, so whoever reads the record sees the whole request.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Mapping
from types import TracebackType

import orjson
from aiohttp import web

from gateway.config.model import ApiKey, ModelRoute
from gateway.engine import RequestRecord, RequestStarted
from gateway.errors import GatewayError
from gateway.formats.codecs import Codec
from gateway.policies.ratelimit import RateLimitOptions
from gateway.server.gateway import Gateway
from gateway.wire import Json

_JSON = "application/json"
_request_ids = itertools.count(1)


class RateLimited(GatewayError):
    """A 429 from the gateway's own limits, with the wait the client should honour."""

    def __init__(self, wait_s: float, key: ApiKey | None) -> None:
        who = f"key '{key.name}'" if key is not None else "this gateway"
        super().__init__(429, f"rate limit exceeded for {who}; retry in {math.ceil(wait_s)} s",
                         type="rate_limit_error", code="rate_limit_exceeded")
        self.retry_after = str(max(1, math.ceil(wait_s)))


class RequestScope:
    """Use as `async with RequestScope(gw, codec, request) as scope:`; a reload mid-request does not change `gw`."""

    def __init__(self, gw: Gateway, codec: Codec, request: web.Request, endpoint: str = "chat") -> None:
        self.gw = gw
        self.codec = codec
        self.request = request
        self.record = RequestRecord(request_id=next(_request_ids), door=codec.format, started=gw.clock(),
                                    trace_id=trace_id_of(request.headers), endpoint=endpoint)
        self.deadline = 0.0  # event-loop time; set when admitted
        self.key: ApiKey | None = None
        self.limits: RateLimitOptions | None = None  # set when admitted: a reservation to settle
        self.token_estimate = 0
        self.responded = False  # an answer (or error) was written: a cancellation after it is not a 499
        self._finished = False

    async def __aenter__(self) -> RequestScope:
        self.gw.enter()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if exc_type is not None and issubclass(exc_type, asyncio.CancelledError) and not self.responded:
                self.client_left()
            await self.finish()
        finally:
            self.gw.leave()

    # ---- what happened ------------------------------------------------------------------------------------

    def admitted(self, route: ModelRoute, body: Json, *, key: ApiKey | None, limits: RateLimitOptions,
                 token_estimate: int, body_bytes: int, deadline: float, cache: str | None = None) -> None:
        """The request passed every check at the door; its race, cache lookup or replay may start."""
        record = self.record
        record.route, record.alias, record.stream = route, route.alias, body.get("stream") is True
        record.body_bytes, record.key_name, record.cache = body_bytes, key.name if key else None, cache
        self.key, self.limits, self.token_estimate, self.deadline = key, limits, token_estimate, deadline
        self.gw.hooks.request_started(RequestStarted(
            record.request_id, record.alias, record.door, record.endpoint, record.stream, record.started,
            record.trace_id, _trace_headers(self.request.headers), body, cache, record.key_name))

    def set_cache(self, how: str) -> None:
        self.record.cache = how

    def failed(self, err: GatewayError, error_type: str | None = None) -> None:
        self.record.fail(err.status, error_type or err.type)

    def client_left(self) -> None:
        self.record.fail(499, "client_disconnected")

    def reject(self, err: GatewayError) -> web.Response:
        """The request ends with `err`, in the door's error shape (Retry-After on a 429)."""
        self.failed(err)
        return self.error_response(err)

    def error_response(self, err: GatewayError) -> web.Response:
        self.responded = True
        headers = self.headers()
        retry_after = _retry_after(err, self.record)
        if retry_after is not None:
            headers["retry-after"] = retry_after
        return web.Response(body=orjson.dumps(self.codec.error_body(err)), status=err.status, content_type=_JSON,
                            headers=headers)

    def headers(self) -> dict[str, str]:
        """The headers every answer carries: the request id names this request in logs and traces."""
        return {"x-gateway-request-id": str(self.record.request_id)}

    # ---- the end ------------------------------------------------------------------------------------------

    async def finish(self) -> None:
        """Settle the rate limiter and report the finished request. Once; exception-safe."""
        if self._finished:
            return
        self._finished = True
        record = self.record
        try:
            limits = self.limits
            if limits is not None and limits.tokens_per_minute is not None:
                # What the winner used replaces the reservation; no winner (a cache hit, a coalesced waiter,
                # an error): the reservation is refunded in full.
                winner = next((a for a in record.attempts if a.index == record.winner_index), None)
                used = 0 if winner is None else winner.billed_input_tokens + winner.billed_output_tokens
                await self.gw.limiter.settle(key_id(self.key), limits, self.token_estimate, used)
        finally:
            self.gw.hooks.request_finished(record.summary(self.gw.clock()))


def _trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace context of the request: all an observer gets of its headers (never the gateway key)."""
    return {name: value for name in ("traceparent", "tracestate") if (value := headers.get(name)) is not None}


def key_id(key: ApiKey | None) -> str:
    return key.name if key is not None else "anonymous"


def _retry_after(err: GatewayError, record: RequestRecord) -> str | None:
    if isinstance(err, RateLimited):
        return err.retry_after
    if err.status != 429:
        return None
    waits = [a.error.retry_after_s for a in record.attempts
             if a.error is not None and a.error.retry_after_s is not None]
    return str(max(1, int(min(waits) + 0.999))) if waits else None


def trace_id_of(headers: Mapping[str, str]) -> int:
    """The W3C trace id this request belongs to: the caller's `traceparent`, else a new one. Decided here, at
    the door, so every observer (spans, the request log) names the same trace."""
    parent = headers.get("traceparent")
    if parent is not None:
        parts = parent.strip().split("-")
        if len(parts) >= 4 and len(parts[0]) == 2 and parts[0] != "ff" and len(parts[1]) == 32 and len(parts[2]) == 16:
            try:
                trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
            except ValueError:
                trace_id = span_id = 0
            if trace_id and span_id:
                return trace_id
    while not (trace_id := random.getrandbits(128)):
        pass
    return trace_id
