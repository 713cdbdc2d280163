"""Reading a client's request body within a size and a time bound.

aiohttp bounds a body's size (`client_max_size`) but not the time it takes to arrive: a client that sends half
a body and then nothing would hold its request, its connection and its slot in the gateway's in-flight count
(which reload retirement and the graceful drain wait for) forever. Every error here is a `GatewayError`, so
the door that called renders it in its own shape.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.errors import GatewayError

__all__ = ["read_body"]


async def read_body(request: web.Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body of `request`: at most `max_bytes` (else 413), within `timeout_s` (else 408)."""
    if request.content_length is not None and request.content_length > max_bytes:
        # Refused before reading a byte: no point waiting for a body that is too large anyway.
        raise GatewayError(413, f"request body too large ({request.content_length} bytes, limit {max_bytes})")
    try:
        if request.content.is_eof():
            # The whole body came with the head (the usual request: one read of a few KB). Nothing is left to
            # wait for, so no timer is armed (a timer costs as much as reading such a body).
            return await request.read()
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise GatewayError(408, f"request body not received within {timeout_s:g} s",
                           type="timeout_error") from None
    except web.HTTPRequestEntityTooLarge:  # a chunked (or lying) body that grew past the bound
        raise GatewayError(413, f"request body too large (limit {max_bytes} bytes)") from None
    except web.RequestPayloadError:  # e.g. a body that is not in its Content-Encoding: the client's fault
        raise GatewayError(400, "request body could not be decoded (check its Content-Encoding)") from None
