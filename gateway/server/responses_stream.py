"""Writing a streamed Responses answer: `write_stream` (gateway.server.writing) with the Responses door's needs.

Two things differ from the chat doors. Every event is stamped by the turn (its `sequence_number`, one count
per response; the response's gateway id in every lifecycle event), the error event included. And the terminal
event (`response.completed` / `response.incomplete`) is held back until the response is stored: a client that
has seen it may send the next turn with this `previous_response_id` at once, possibly to another replica,
which must then find it.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from gateway.engine import StreamBroken, StreamingWinner
from gateway.errors import GatewayError
from gateway.formats.responses import TERMINAL_EVENTS
from gateway.policies.cache import CachedAnswer
from gateway.server.responses_turn import Turn
from gateway.server.scope import RequestScope
from gateway.wire import SSEEvent

# After the deadline cut a stream, the error event still gets this long to reach a client that is not reading.
_TAIL_WRITE_S = 1.0


async def write_response_stream(scope: RequestScope, turn: Turn, winner: StreamingWinner,
                                headers: dict[str, str], store_key: str | None) -> web.StreamResponse:
    codec = scope.codec
    encode = codec.encode_event
    resp = web.StreamResponse(status=200, headers={**headers, "content-type": "text/event-stream",
                                                   "cache-control": "no-cache"})
    aggregator = codec.aggregator()
    held: list[bytes] = []  # the terminal event, written once the response is stored

    def frame(events: list[SSEEvent]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            turn.stamp(ev)
            aggregator.feed(ev)
            (held if ev.data.get("type") in TERMINAL_EVENTS else out).append(encode(ev))
        return b"".join(out)

    tail = b""
    async with winner:  # however this ends, the upstream is closed and the attempt settled, once
        try:
            await resp.prepare(scope.request)
            async with asyncio.timeout_at(scope.deadline):
                async for events in winner:
                    await resp.write(frame(events))
        except StreamBroken as exc:  # after the commit there is no switching: end the stream with an error
            scope.failed(exc, exc.cause_type)
            tail = encode(turn.stamp(codec.error_event(exc)))
        except TimeoutError:
            err = GatewayError(504, "deadline exceeded mid-stream", type="timeout_error")
            scope.failed(err, "timeout")
            tail = encode(turn.stamp(codec.error_event(err)))
        except ConnectionResetError:  # the client left: nothing more to write
            scope.client_left()
    if scope.record.status == 200:
        await _keep(scope, turn, winner, aggregator.result(), store_key, headers)
        tail = b"".join(held)
    scope.responded = True
    if not resp.prepared:  # the client left before anything was sent
        return resp
    try:
        async with asyncio.timeout(_TAIL_WRITE_S):  # a client that stopped reading cannot hold the request
            if tail:
                await resp.write(tail)
            await resp.write_eof()
    except ConnectionResetError:
        if scope.record.status == 200:
            scope.client_left()
    except TimeoutError:
        pass  # the status says what ended the stream (e.g. the deadline: 504); the client is not reading
    return resp


async def _keep(scope: RequestScope, turn: Turn, winner: StreamingWinner, response: dict[str, object],
                store_key: str | None, headers: dict[str, str]) -> None:
    """Store the finished response (conversation) and, when cacheable, the answer (cache)."""
    await turn.save(scope.gw.conversations, response)
    if store_key is not None:
        target = winner.target
        await scope.gw.answers.put(scope.record.alias, store_key, CachedAnswer(
            orjson.dumps(response), target.provider, target.model,
            tuple((k, v) for k, v in headers.items() if k != "x-gateway-request-id")))
