"""Writing a streamed Responses answer: `write_stream` (gateway.server.writing) with the Responses door's needs.

Two things differ from the chat doors. Every event is stamped by the turn (its `sequence_number`, one count
per response; the response's gateway id in every lifecycle event), the error event included. And the terminal
event (`response.completed` / `response.incomplete`) is held back until the response is stored: a client that
has seen it may send the next turn with this `previous_response_id` at once, possibly to another replica,
which must then find it.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from gateway.engine import StreamingWinner
from gateway.errors import ProviderError
from gateway.formats.responses import TERMINAL_EVENTS
from gateway.policies.cache import CachedAnswer
from gateway.server.responses_turn import Turn
from gateway.server.scope import RequestScope
from gateway.server.writing import EventStreamResponse, finish_stream, pump
from gateway.wire import SSEEvent

log = logging.getLogger("gateway.server")


async def write_response_stream(scope: RequestScope, turn: Turn, winner: StreamingWinner,
                                headers: dict[str, str], store_key: str | None) -> web.StreamResponse:
    codec = scope.codec
    encode = codec.encode_event
    resp = EventStreamResponse(status=200, headers={**headers, "content-type": "text/event-stream",
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

    failure, unwritten = await pump(scope, winner, resp, frame)
    tail = b"" if failure is None else encode(turn.stamp(codec.error_event(failure)))
    if scope.record.status == 200:
        try:
            response = aggregator.result()
        except ProviderError:  # the client has its whole stream; an answer that cannot be assembled is not kept
            log.warning("response of %s not stored: it cannot be assembled", winner.target.label)
        else:
            await _keep(scope, turn, winner, response, store_key, headers)
        tail = b"".join(held)
    return await finish_stream(scope, resp, unwritten + tail)


async def _keep(scope: RequestScope, turn: Turn, winner: StreamingWinner, response: dict[str, object],
                store_key: str | None, headers: dict[str, str]) -> None:
    """Store the finished response (conversation) and, when cacheable, the answer (cache)."""
    await turn.save(scope.gw.conversations, response)
    if store_key is not None:
        target = winner.target
        await scope.gw.answers.put(scope.record.alias, store_key, CachedAnswer(
            orjson.dumps(response), target.provider, target.model,
            tuple((k, v) for k, v in headers.items() if k != "x-gateway-request-id")))
