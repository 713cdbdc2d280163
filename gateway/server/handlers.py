"""Request handlers for both doors. One code path; the `Door` decides every byte of wire format."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import orjson
from aiohttp import web

from gateway.config.model import ApiKey, ModelRoute
from gateway.engine import Committed, Completed, RequestRecord
from gateway.engine.attempt import Outcome
from gateway.errors import GatewayError, ProviderError
from gateway.formats.replay import REPLAY
from gateway.policies.cache import CachedAnswer, cache_key, is_cacheable
from gateway.policies.ratelimit import RateLimitOptions
from gateway.server.auth import check_key
from gateway.server.doors import ANTHROPIC_DOOR, OPENAI_DOOR, Door
from gateway.server.gateway import Gateway, current_gateway
from gateway.server.reading import read_body
from gateway.telemetry import IncomingRequest
from gateway.wire import Json, SSEEvent

_JSON = "application/json"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _chat(request, OPENAI_DOOR)


async def messages(request: web.Request) -> web.StreamResponse:
    return await _chat(request, ANTHROPIC_DOOR)


async def healthz(request: web.Request) -> web.Response:
    # Redis being away is not unhealthy: the gateway serves on local state meanwhile. It is reported, though.
    return web.json_response({"status": "ok", "state": current_gateway(request).shared.health()})


async def models(request: web.Request) -> web.Response:
    gw = current_gateway(request)
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


async def _read_body(request: web.Request, door: Door, max_bytes: int) -> tuple[Json, int]:
    raw = await read_body(request, max_bytes, current_gateway(request).config.server.body_timeout_s)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"request body is not valid JSON: {exc.msg}") from None
    return door.validate_request(body), len(raw)


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


@dataclass(slots=True)
class _Admitted:
    """A request that passed every check at the door."""

    body: Json
    route: ModelRoute
    deadline: float
    key: ApiKey | None
    limits: RateLimitOptions
    token_estimate: int
    body_bytes: int


async def _admit(request: web.Request, gw: Gateway, body: Json, size: int, api_key: ApiKey | None) -> _Admitted:
    config = gw.config
    alias = body["model"]
    route = config.models.get(alias)
    if route is None:
        raise GatewayError(404, f"model '{alias}' not found; available: {', '.join(config.models)}",
                           type="not_found_error", param="model", code="model_not_found")
    timeout_s = _deadline_s(request, config.server.deadline_header, config.deadline_s(route))
    limits = api_key.limits if api_key is not None and api_key.limits is not None else config.server.limits
    max_out = body.get("max_tokens") or body.get("max_completion_tokens") or route.default_max_tokens
    estimate = size // 4 + (max_out if isinstance(max_out, int) else 0)
    if limits.requests_per_minute is not None or limits.tokens_per_minute is not None:
        wait = await gw.limiter.check(_key_id(api_key), limits, estimate)
        if wait is not None:
            raise _RateLimited(wait, api_key)
    return _Admitted(body, route, asyncio.get_running_loop().time() + timeout_s, api_key, limits, estimate, size)


class _RateLimited(GatewayError):
    def __init__(self, wait_s: float, key: ApiKey | None) -> None:
        who = f"key '{key.name}'" if key is not None else "this gateway"
        super().__init__(429, f"rate limit exceeded for {who}; retry in {math.ceil(wait_s)} s",
                         type="rate_limit_error", code="rate_limit_exceeded")
        self.retry_after = str(max(1, math.ceil(wait_s)))


def _key_id(key: ApiKey | None) -> str:
    return key.name if key is not None else "anonymous"


async def _chat(request: web.Request, door: Door) -> web.StreamResponse:
    gw = current_gateway(request)  # captured once: a reload mid-request does not change this request's config
    gw.enter()
    try:
        return await _chat_on(request, door, gw)
    finally:
        gw.leave()


async def _chat_on(request: web.Request, door: Door, gw: Gateway) -> web.StreamResponse:
    try:
        api_key = check_key(request, gw.config.server.keys)
        body, size = await _read_body(request, door, gw.config.server.max_body_bytes)
        admitted = await _admit(request, gw, body, size, api_key)
    except GatewayError as err:
        return _error(door, err, _retry_after_of(err))

    route, stream = admitted.route, body.get("stream") is True
    options = route.cache
    if options is None or not is_cacheable(body, options) or "no-cache" in request.headers.get("cache-control", ""):
        return await _race(request, door, gw, admitted, None)
    key = cache_key(door.format, route.alias, body, api_key.key if api_key else None, options)
    hit = await gw.answers.get(route.alias, key)
    if hit is not None:
        return await _from_cache(request, door, gw, admitted, hit, "hit")
    if stream:  # streamed through as usual; the aggregated answer is stored for the next caller
        return await _race(request, door, gw, admitted, key)
    joined = gw.coalescer.waiters(key) > 0  # the same request is in flight: share its answer
    try:
        answer = await gw.coalescer.run(key, lambda: _flight(request, door, gw, admitted, key))
    except GatewayError as err:
        return _error(door, err, _retry_after_of(err))
    if joined:
        return await _from_cache(request, door, gw, admitted, answer, "coalesced")
    return web.Response(body=answer.body, content_type=_JSON, headers={**dict(answer.headers),
                                                                        "x-gateway-cache": "miss"})


def _retry_after_of(err: GatewayError) -> dict[str, str] | None:
    return {"retry-after": err.retry_after} if isinstance(err, _RateLimited) else None


async def _flight(request: web.Request, door: Door, gw: Gateway, admitted: _Admitted, key: str) -> CachedAnswer:
    """One upstream race whose answer every identical concurrent request shares (and the cache keeps).

    It runs in the coalescer's own task, so a caller that leaves does not cancel it for the others.
    """
    record = _new_record(request, door, gw, admitted, "miss")
    gw.hooks.request_started(record)
    failure: GatewayError | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            try:  # inside the group: TaskGroup would wrap an error from its body in an ExceptionGroup
                result = await gw.engine.run(record, admitted.body, tg, admitted.deadline)
            except GatewayError as err:
                record.status, record.error_type = err.status, err.type
                failure = err
            else:
                assert isinstance(result, Completed)
                answer = CachedAnswer(orjson.dumps(result.body), result.attempt.provider,
                                      result.attempt.target.model, tuple(_winner_headers(record).items()))
                # Awaited (bounded by the state timeout): once this caller has its answer, so has every replica.
                await gw.answers.put(admitted.route.alias, key, answer)
                record.latency_s = gw.clock() - record.started
    except asyncio.CancelledError:
        record.status, record.error_type = 499, "client_disconnected"
        raise
    finally:
        await _settle(gw, admitted, record)
        if record.latency_s is None:
            record.latency_s = gw.clock() - record.started
        gw.hooks.request_finished(record)
    if failure is not None:
        raise failure
    return answer


async def _from_cache(request: web.Request, door: Door, gw: Gateway, admitted: _Admitted, answer: CachedAnswer,
                      how: str) -> web.StreamResponse:
    record = _new_record(request, door, gw, admitted, how)
    gw.hooks.request_started(record)
    headers = {**dict(answer.headers), "x-gateway-cache": how}
    try:
        if not record.stream:
            return web.Response(body=answer.body, content_type=_JSON, headers=headers)
        resp = web.StreamResponse(status=200, headers={**headers, "content-type": "text/event-stream",
                                                       "cache-control": "no-cache"})
        await resp.prepare(request)
        keep_usage = door.wants_usage(admitted.body)
        events = REPLAY[door.format](orjson.loads(answer.body))
        await resp.write(b"".join(door.encode_event(ev) for ev in events if keep_usage or not door.is_usage_only(ev))
                         + door.stream_end)
        await resp.write_eof()
        return resp
    except ConnectionResetError:
        record.status, record.error_type = 499, "client_disconnected"
        return web.Response(status=499)
    finally:
        if how == "hit":
            await gw.limiter.settle(_key_id(admitted.key), admitted.limits, admitted.token_estimate, 0)
        record.latency_s = gw.clock() - record.started
        gw.hooks.request_finished(record)


def _new_record(request: web.Request, door: Door, gw: Gateway, admitted: _Admitted, cache: str | None) -> RequestRecord:
    record = RequestRecord(route=admitted.route, door=door.format, stream=admitted.body.get("stream") is True,
                           started=gw.clock(), cache=cache, body_bytes=admitted.body_bytes,
                           key_name=admitted.key.name if admitted.key is not None else None)
    # For telemetry: the W3C traceparent to continue (and the body, for opt-in content capture).
    record.context = IncomingRequest(request.headers, admitted.body)
    return record


async def _settle(gw: Gateway, admitted: _Admitted, record: RequestRecord) -> None:
    """Correct the rate limiter's token estimate with what the winner really used."""
    limits = admitted.limits
    if limits.tokens_per_minute is None:
        return
    winner = record.winner
    used = 0 if winner is None else winner.billed_input_tokens + winner.billed_output_tokens
    await gw.limiter.settle(_key_id(admitted.key), limits, admitted.token_estimate, used)


async def _race(request: web.Request, door: Door, gw: Gateway, admitted: _Admitted,
                store_key: str | None) -> web.StreamResponse:
    """Run the hedge race for this request and write the winner's answer."""
    record = _new_record(request, door, gw, admitted, None if store_key is None else "miss")
    hooks = gw.hooks
    hooks.request_started(record)
    responded = False
    try:
        async with asyncio.TaskGroup() as tg:
            # Errors are handled inside the group: TaskGroup would wrap them in an ExceptionGroup.
            try:
                result = await gw.engine.run(record, admitted.body, tg, admitted.deadline)
            except GatewayError as err:
                record.status, record.error_type = err.status, err.type
                responded = True
                return _error(door, err, _retry_after(record))
            headers = _winner_headers(record)
            if store_key is not None:
                headers["x-gateway-cache"] = "miss"
            if isinstance(result, Committed):
                resp = await _stream(request, door, admitted.body, record, result, headers, admitted.deadline, gw,
                                     store_key)
                responded = True
                return resp
            record.latency_s = gw.clock() - record.started
            # Sent before the TaskGroup awaits the cancelled losers: teardown never delays the winner.
            resp = web.Response(body=orjson.dumps(result.body), content_type=_JSON, headers=headers)
            try:
                await resp.prepare(request)
                await resp.write_eof()
            except ConnectionResetError:
                record.status, record.error_type = 499, "client_disconnected"
            responded = True
            return resp
    except asyncio.CancelledError:
        if not responded:  # cancelled after the answer was sent (the client closed first) is still a success
            record.status, record.error_type = 499, "client_disconnected"
        raise
    finally:
        await _settle(gw, admitted, record)
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
                  headers: dict[str, str], deadline: float, gw: Gateway, store_key: str | None) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={**headers, "content-type": "text/event-stream",
                                                   "cache-control": "no-cache"})
    keep_usage = door.wants_usage(body)
    encode, usage_only = door.encode_event, door.is_usage_only

    aggregator = door.aggregator() if store_key is not None else None

    def frame(events: list[SSEEvent]) -> bytes:
        if aggregator is not None:
            for ev in events:
                aggregator.feed(ev)
        return b"".join(encode(ev) for ev in events if keep_usage or not usage_only(ev))

    attempt, permit = won.attempt, won.stream.permit
    tail = door.stream_end
    try:  # from the first write on: a client gone even before the headers still frees the winner's slot
        await resp.prepare(request)
        async with asyncio.timeout_at(deadline):
            await resp.write(frame(won.head))
            async for events in won.stream.rest():
                await resp.write(frame(events))
        if permit is not None:
            permit.success()
        if aggregator is not None and store_key is not None:
            await gw.answers.put(record.route.alias, store_key, CachedAnswer(
                orjson.dumps(aggregator.result()), attempt.provider, attempt.target.model, tuple(headers.items())))
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
    if not resp.prepared:  # the client left before anything was sent
        return resp
    try:
        if tail:
            await resp.write(tail)
        await resp.write_eof()
    except ConnectionResetError:
        record.status, record.error_type = 499, "client_disconnected"
    return resp
