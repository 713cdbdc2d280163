"""Writing an answer to the client: a JSON body, a streamed winner, or a stored answer replayed.

The writers record only what the client saw (a 499 when it left, a 502/504 when the stream ended in an error
event); the engine settles the attempt behind a streamed winner itself, when its stream ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from aiohttp import web

from gateway.engine import StreamBroken, StreamingWinner
from gateway.errors import GatewayError, ProviderError
from gateway.formats import Aggregator
from gateway.policies.cache import CachedAnswer
from gateway.server.scope import RequestScope
from gateway.wire import Json, SSEEvent

log = logging.getLogger("gateway.server")

_JSON = "application/json"
# After the deadline cut a stream, the error event still gets this long to reach a client that is not reading.
_TAIL_WRITE_S = 1.0
# Room left under the transport's high-water mark for the status line and headers written with a body.
_HEADER_ROOM = 8192


def _sse_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}


class EventStreamResponse(web.StreamResponse):
    """A streamed answer whose headers go out with its first bytes (as `web.Response` sends a body's), not in a
    write of their own: a stream is only prepared when its first events are ready to be written (the commit
    point), so the client waits for nothing, and a fast answer costs one write to the client instead of two."""

    _send_headers_immediately = False


async def write_json(scope: RequestScope, body: Json, headers: dict[str, str]) -> web.StreamResponse:
    return await write_body(scope, orjson.dumps(body), headers)


async def write_body(scope: RequestScope, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
    """A JSON answer, written here (not after the handler returns) so the request ends with its last byte."""
    resp = web.Response(body=body, content_type=_JSON, headers=headers)
    try:
        await _send_last(scope, resp, b"", len(body), _write_deadline(scope))
    except ConnectionResetError:
        scope.client_left()
    except TimeoutError:
        scope.record.fail(499, "client_not_reading")
    scope.responded = True
    return resp


def _write_deadline(scope: RequestScope) -> float:
    """Writing an answer is bounded by the request's deadline, with at least `_TAIL_WRITE_S` to do it."""
    return max(scope.deadline, asyncio.get_running_loop().time() + _TAIL_WRITE_S)


def _cannot_wait(scope: RequestScope, size: int) -> bool:
    """Whether writing `size` more bytes (and headers) is sure not to wait for the client: the transport holds
    nothing unsent and the bytes stay under its high-water mark, so the transport takes them without pausing the
    protocol and aiohttp's drain after the write returns at once. Such a write needs no timer; a timeout context
    costs about 6 us (a timer scheduled and cancelled), a few percent of a fast request's own work."""
    transport = scope.request.transport
    if transport is None:
        return False
    return (transport.get_write_buffer_size() == 0
            and size + _HEADER_ROOM <= transport.get_write_buffer_limits()[1])


async def _send_last(scope: RequestScope, resp: web.StreamResponse, data: bytes, size: int, deadline: float) -> None:
    """Prepare `resp` if it is not yet, and write `data` and the end of its body: bounded by `deadline` when the
    write could wait for a client that does not read (which must not hold the request), unbounded when it cannot
    wait. `size` counts the bytes still to go (a `web.Response` writes its body on `write_eof`)."""
    if _cannot_wait(scope, size):
        await _end(scope, resp, data)
    else:
        async with asyncio.timeout_at(deadline):
            await _end(scope, resp, data)


async def _end(scope: RequestScope, resp: web.StreamResponse, data: bytes) -> None:
    if not resp.prepared:
        await resp.prepare(scope.request)
    await resp.write_eof(data)


async def write_replay(scope: RequestScope, body: Json, answer: CachedAnswer, how: str) -> web.StreamResponse:
    """A stored answer (a cache hit, or the answer of the identical request this one joined)."""
    headers = {**dict(answer.headers), **scope.headers(), "x-gateway-cache": how}
    if not scope.record.stream:
        return await write_body(scope, answer.body, headers)
    codec = scope.codec
    resp = EventStreamResponse(status=200, headers=_sse_headers(headers))
    keep_usage = codec.wants_usage(body)
    events = codec.replay(orjson.loads(answer.body))
    data = codec.frames(events, keep_usage) + codec.stream_end
    try:
        await _send_last(scope, resp, data, len(data), _write_deadline(scope))
    except ConnectionResetError:
        scope.client_left()
    except TimeoutError:
        scope.record.fail(499, "client_not_reading")
    scope.responded = True
    return resp


async def write_stream(scope: RequestScope, body: Json, winner: StreamingWinner, headers: dict[str, str],
                       store_key: str | None) -> web.StreamResponse:
    """The winner's events as they come, then the format's end (or an error event), then the end of the body."""
    codec = scope.codec
    resp = EventStreamResponse(status=200, headers=_sse_headers(headers))
    keep_usage = codec.wants_usage(body)
    frames = codec.frames
    aggregator = codec.aggregator() if store_key is not None else None

    def frame(events: list[SSEEvent]) -> bytes:
        if aggregator is not None:
            for ev in events:
                aggregator.feed(ev)
        return frames(events, keep_usage)

    failure, unwritten = await pump(scope, winner, resp, frame)
    if failure is not None:
        tail = codec.encode_event(codec.error_event(failure)) + codec.stream_end
    else:
        tail = codec.stream_end if scope.record.status == 200 else b""  # else the client left: nothing more
    if aggregator is not None and store_key is not None and scope.record.status == 200:
        await _store(scope, store_key, aggregator, winner, headers)
    return await finish_stream(scope, resp, unwritten + tail)


async def pump(scope: RequestScope, winner: StreamingWinner, resp: web.StreamResponse,
               frame: Callable[[list[SSEEvent]], bytes]) -> tuple[GatewayError | None, bytes]:
    """Write the winner's events (through `frame`) under the request's deadline, and settle the stream: returns
    the error the client's stream must end with (a broken stream, the deadline), or None (complete, or the
    client left: then the record says 499), and the framed events not written yet, which go before the tail.

    Events are written when the next batch would have to be waited for: batches already here (the head and the
    events read with it, the last events and the stream's end) go out together, in one write."""
    held: list[bytes] = []
    async with winner:  # however this ends, the upstream is closed and the attempt settled, once
        try:  # from the first write on: a client gone even before the headers is handled the same way
            await resp.prepare(scope.request)
            async with asyncio.timeout_at(scope.deadline):
                async for events in winner:
                    held.append(frame(events))
                    if not winner.ready:
                        chunk = b"".join(held)
                        held.clear()
                        await resp.write(chunk)
        except (StreamBroken, ProviderError) as exc:  # after the commit no switching: end the stream with an error
            broken = exc if isinstance(exc, StreamBroken) else winner.broken(exc)  # an event it cannot write
            scope.failed(broken, broken.cause_type)
            return broken, b"".join(held)
        except TimeoutError:
            err = GatewayError(504, "deadline exceeded mid-stream", type="timeout_error")
            scope.failed(err, "timeout")
            return err, b"".join(held)
        except ConnectionResetError:  # the client left: nothing more to write
            scope.client_left()
            return None, b""
    return None, b"".join(held)


async def finish_stream(scope: RequestScope, resp: web.StreamResponse, tail: bytes) -> web.StreamResponse:
    """The stream's last bytes and its end, bounded: a client that stopped reading cannot hold the request."""
    scope.responded = True
    if not resp.prepared:  # the client left before anything was sent
        return resp
    try:  # the last bytes and the end of the body, in one write
        await _send_last(scope, resp, tail, len(tail), asyncio.get_running_loop().time() + _TAIL_WRITE_S)
    except ConnectionResetError:
        if scope.record.status == 200:
            scope.client_left()
    except TimeoutError:
        pass  # the status says what ended the stream (e.g. the deadline: 504); the client is not reading
    return resp


async def _store(scope: RequestScope, key: str, aggregator: Aggregator, winner: StreamingWinner,
                 headers: dict[str, str]) -> None:
    """The streamed answer, aggregated, for the next identical request. The client has its whole stream: an
    answer that cannot be assembled or written is not cached, and changes nothing for this request."""
    try:
        body = orjson.dumps(aggregator.result())
    except (ProviderError, orjson.JSONEncodeError):
        log.warning("streamed answer of %s not cached: it cannot be assembled", winner.target.label)
        return
    await scope.gw.answers.put(scope.record.alias, key, CachedAnswer(
        body, winner.target.provider, winner.target.model,
        tuple((k, v) for k, v in headers.items() if k != "x-gateway-request-id")))
