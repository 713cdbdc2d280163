"""Time bounds on client connections that aiohttp's server does not have on its own.

aiohttp closes a keep-alive connection that stays idle for `keepalive_timeout` (from connect, or from the end
of the last response), but nothing bounds the time a request's head takes to arrive once it has started: a
client sending one header byte a second (slowloris) holds its connection, and its file descriptor, for as long
as it likes. So each connection gets a head timer:

- armed when the connection is made, and on the first byte of each later request on it (unless that read
  already holds the whole head: the usual case, which so costs no timer);
- disarmed when aiohttp's parser has the complete head (a request is queued) or a response is finished;
- when it fires with no request in progress, the client gets a bare 408 and the connection is closed.

The body is bounded where it is read (`gateway.server.reading`), idle connections by `keepalive_timeout`.
`GatewayRunner` is `web.AppRunner` with these bounds from `ServerConfig`; use it with any `web.TCPSite`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.config.model import ServerConfig

__all__ = ["BoundedRequestHandler", "GatewayRunner"]

# Sent when a head is too slow: the request line may not even be there, so no door (and no JSON shape) is
# known yet. `Connection: close` because the connection is closed right after.
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Content-Length: 29\r\nConnection: close\r\n\r\nrequest head not sent in time\n")


class BoundedRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, plus the head timer described in the module docstring.

    It reads two of RequestHandler's private fields, the only way to tell "waiting for a request" from
    "handling one (or lingering over the unread rest of its body)": `_waiter`, set while the connection's task
    waits for the parser's next request, and `_messages`, the requests parsed and not handled yet. The
    end-to-end tests in tests/e2e/test_request_timeouts.py fail if an aiohttp upgrade changes what they mean.
    """

    __slots__ = ("_head_timeout_s", "_head_timer")

    def __init__(self, manager: web.Server, *, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout_s = head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None

    def _between_requests(self) -> bool:
        return self._waiter is not None and not self._messages

    def _arm(self) -> None:
        self._head_timer = asyncio.get_running_loop().call_later(self._head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._between_requests() or self.transport is None:
            return  # a request is being handled (or its unread body drained): its own bounds apply
        self.transport.write(_TIMEOUT_RESPONSE)
        self.force_close()  # closes the transport once the 408 is flushed, and ends the connection's task

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Armed at once (the connection's task may not be waiting yet): a connection that never sends a byte
        # is closed after the head bound, not kept as long as an idle keep-alive one.
        self._arm()

    def data_received(self, data: bytes) -> None:
        starts_request = self._head_timer is None and bool(data) and self._between_requests()
        super().data_received(data)
        if starts_request and self._between_requests():
            # The first bytes of the next request on a keep-alive connection, and its head is not complete yet.
            # (A head that came whole in this read, the usual case, arms no timer only to cancel it at once.)
            self._arm()
        elif self._head_timer is not None and self._messages:
            self._disarm()  # the parser has a complete head: from here the body bound applies

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class _BoundedServer(web.Server):
    """`web.Server` whose connections are `BoundedRequestHandler`s (it is the protocol factory a site uses)."""

    head_timeout_s: float = 10.0

    def __call__(self) -> RequestHandler:
        return BoundedRequestHandler(self, loop=self._loop, head_timeout_s=self.head_timeout_s, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` with the request-reading bounds of `server`: the head timer and the idle timeout."""

    def __init__(self, app: web.Application, server: ServerConfig, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=server.idle_timeout_s, **kwargs)
        self._head_timeout_s = server.header_timeout_s

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        # The application builds its own web.Server (with its handler, request factory and options); only the
        # protocol it makes per connection changes, so the class is swapped rather than the server rebuilt.
        made.__class__ = _BoundedServer
        assert isinstance(made, _BoundedServer)
        made.head_timeout_s = self._head_timeout_s
        return made
