"""Request handlers for both doors. One code path; the `Door` decides every byte of wire format."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.engine import Committed, RequestRecord
from gateway.engine.attempt import Outcome
from gateway.server.auth import check_key
from gateway.server.doors import ANTHROPIC_DOOR, OPENAI_DOOR, Door
from gateway.server.state import GATEWAY, Gateway
from gateway.telemetry import IncomingRequest
from gateway.types import GatewayError, Json, ProviderError, SSEEvent

_JSON = "application/json"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, OPENAI_DOOR)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _chat(request, ANTHROPIC_DOOR)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def models(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    check_key(request, gw.config.server.keys)
    # One list both SDKs parse: OpenAI's fields and Anthropic's side by side.
    data = [{"id": alias, "object": "model", "created": 0, "owned_by": "gateway", "type": "model",
             "display_name": alias, "created_at": "1970-01-01T00:00:00Z"} for alias in gw.config.models]
    return web.json_response({"object": "list", "data": data, "has_more": False,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})


def _error(door: Door, err: GatewayError, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(door.error_body(err)), status=err.status, content_type=_JSON,
                        headers=headers)


async def _read_body(request: web.Request, door: Door, max_bytes: int) -> Json:
    if request.content_length is not None and request.content_length > max_bytes:
        raise GatewayError(413, f"request body too large ({request.content_length} bytes, limit {max_bytes})")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise GatewayError(413, f"request body too large (limit {max_bytes} bytes)") from None
    except web.RequestPayloadError:  # e.g. a body that is not in its Content-Encoding: the client's fault
        raise GatewayError(400, "request body could not be decoded (check its Content-Encoding)") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc.msg}") from None
    return door.validate_request(body)


def _deadline_s(request: web.Request, header: str, configured: float) -> float:
    value = request.headers.get(header)
    if value is None:
        return configured
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds:
        raise GatewayError(400, f"header {header} must be a positive number of seconds, got {value!r}")
    return min(seconds, configured)  # a client may shorten the deadline, never lengthen it


async def _chat(request: web.Request, door: Door) -> web.StreamResponse:
    gw = request.app[GATEWAY]  # captured once: a reload mid-request does not change this request's config
    config = gw.config
    try:
        check_key(request, config.server.keys)
        body = await _read_body(request, door, config.server.max_body_bytes)
        alias = body["model"]
        route = config.models.get(alias)
        if route is None:
            raise GatewayError(404, f"model '{alias}' not found; available: {', '.join(config.models)}",
                               type="not_found_error", param="model", code="model_not_found")
        timeout_s = _deadline_s(request, config.server.deadline_header, config.deadline_s(route))
    except GatewayError as err:
        return _error(door, err)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    record = RequestRecord(route=route, door=door.format, stream=body.get("stream") is True,
                           started=gw.clock())
    # For telemetry: the W3C traceparent to continue (and the body, for opt-in content capture).
    record.context = IncomingRequest(request.headers, body)
    hooks = gw.hooks
    hooks.request_started(record)
    try:
        async with asyncio.TaskGroup() as tg:
            # Errors are handled inside the group: TaskGroup would wrap them in an ExceptionGroup.
            try:
                result = await gw.engine.run(record, body, tg, deadline)
            except GatewayError as err:
                record.status, record.error_type = err.status, err.type
                return _error(door, err, _retry_after(record))
            headers = _winner_headers(record)
            if isinstance(result, Committed):
                return await _stream(request, door, body, record, result, headers, deadline, gw)
            record.latency_s = gw.clock() - record.started
            # Sent before the TaskGroup awaits the cancelled losers: teardown never delays the winner.
            resp = web.Response(body=orjson.dumps(result.body), content_type=_JSON, headers=headers)
            try:
                await resp.prepare(request)
                await resp.write_eof()
            except ConnectionResetError:
                record.status, record.error_type = 499, "client_disconnected"
            return resp
    except asyncio.CancelledError:
        record.status, record.error_type = 499, "client_disconnected"
        raise
    finally:
        if record.latency_s is None:
            record.latency_s = gw.clock() - record.started
        hooks.request_finished(record)


def _winner_headers(record: RequestRecord) -> dict[str, str]:
    winner = record.winner
    assert winner is not None
    return {"x-gateway-provider": winner.provider, "x-gateway-model": winner.target.model,
            "x-gateway-attempts": str(sum(1 for a in record.attempts if a.outcome is not Outcome.SKIPPED))}


def _retry_after(record: RequestRecord) -> dict[str, str] | None:
    waits = [a.error.retry_after_s for a in record.attempts
             if a.error is not None and a.error.retry_after_s is not None]
    return {"retry-after": str(max(1, int(min(waits) + 0.999)))} if waits and record.status == 429 else None


async def _stream(request: web.Request, door: Door, body: Json, record: RequestRecord, won: Committed,
                  headers: dict[str, str], deadline: float, gw: Gateway) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={**headers, "content-type": "text/event-stream",
                                                   "cache-control": "no-cache"})
    await resp.prepare(request)
    keep_usage = door.wants_usage(body)
    encode, usage_only = door.encode_event, door.is_usage_only

    def frame(events: list[SSEEvent]) -> bytes:
        return b"".join(encode(ev) for ev in events if keep_usage or not usage_only(ev))

    attempt, permit = won.attempt, won.stream.permit
    tail = door.stream_end
    try:
        async with asyncio.timeout_at(deadline):
            await resp.write(frame(won.head))
            async for events in won.stream.rest():
                await resp.write(frame(events))
        if permit is not None:
            permit.success()
    except ProviderError as exc:  # after the commit there is no switching: end the stream with an error
        attempt.error = exc
        if permit is not None:
            permit.failure()
        record.status, record.error_type = 502, exc.error_type
        tail = encode(door.error_event(GatewayError(502, exc.message, type="api_error"))) + tail
    except TimeoutError:
        record.status, record.error_type = 504, "timeout"
        tail = encode(door.error_event(GatewayError(504, "deadline exceeded mid-stream",
                                                    type="timeout_error"))) + tail
    except ConnectionResetError:  # the client left: nothing more to write
        record.status, record.error_type = 499, "client_disconnected"
        tail = b""
    finally:
        await won.stream.aclose()  # no-op after a clean end; otherwise drops the upstream connection
        if permit is not None:
            permit.release()  # no-op when settled above; a client that left says nothing of the provider
        attempt.ended = gw.clock()
        record.latency_s = attempt.ended - record.started
        gw.hooks.attempt_finished(record, attempt)
    try:
        if tail:
            await resp.write(tail)
        await resp.write_eof()
    except ConnectionResetError:
        record.status, record.error_type = 499, "client_disconnected"
    return resp
