"""`read_body`: the size and time bounds on a request body, on a request whose body the test feeds by hand."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request

from gateway.errors import GatewayError
from gateway.server.reading import read_body


def request_with(payload: streams.StreamReader, headers: dict[str, str], max_size: int = 1024) -> web.Request:
    return make_mocked_request("POST", "/v1/chat/completions", headers=headers, payload=payload,
                               client_max_size=max_size)


def stream() -> streams.StreamReader:
    return streams.StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())


async def test_whole_body_within_the_bounds() -> None:
    payload = stream()
    payload.feed_data(b'{"a": ')
    payload.feed_data(b"1}")
    payload.feed_eof()
    assert await read_body(request_with(payload, {"Content-Length": "8"}), 1024, 1.0) == b'{"a": 1}'


async def test_a_body_that_stops_halfway_is_a_408() -> None:
    payload = stream()
    payload.feed_data(b'{"a": ')  # and nothing more, ever
    with pytest.raises(GatewayError) as info:
        await read_body(request_with(payload, {"Content-Length": "8"}), 1024, 0.05)
    assert info.value.status == 408 and info.value.type == "timeout_error"
    assert "0.05 s" in info.value.message


async def test_a_declared_length_over_the_bound_is_refused_before_reading() -> None:
    payload = stream()  # never fed: read_body must not wait for it
    with pytest.raises(GatewayError) as info:
        await read_body(request_with(payload, {"Content-Length": "5000"}), 1024, 10.0)
    assert info.value.status == 413 and "5000 bytes" in info.value.message


async def test_a_chunked_body_that_grows_past_the_bound_is_a_413() -> None:
    payload = stream()
    payload.feed_data(b"x" * 2000)
    payload.feed_eof()
    with pytest.raises(GatewayError) as info:
        await read_body(request_with(payload, {"Transfer-Encoding": "chunked"}, max_size=1024), 1024, 1.0)
    assert info.value.status == 413


async def test_an_undecodable_body_is_a_400() -> None:
    payload = stream()
    payload.set_exception(web.RequestPayloadError("bad gzip"))
    with pytest.raises(GatewayError) as info:
        await read_body(request_with(payload, {"Content-Length": "8"}), 1024, 1.0)
    assert info.value.status == 400 and "Content-Encoding" in info.value.message


async def test_a_body_that_came_whole_is_read_without_arming_a_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    armed: list[float] = []
    real_timeout = asyncio.timeout

    def counting_timeout(delay: float | None) -> asyncio.Timeout:
        armed.append(delay or 0.0)
        return real_timeout(delay)

    monkeypatch.setattr("gateway.server.reading.asyncio.timeout", counting_timeout)
    whole = stream()
    whole.feed_data(b'{"a": 1}')
    whole.feed_eof()
    assert await read_body(request_with(whole, {"Content-Length": "8"}), 1024, 1.0) == b'{"a": 1}'
    assert armed == []
    partial = stream()
    partial.feed_data(b'{"a": ')
    with pytest.raises(GatewayError):
        await read_body(request_with(partial, {"Content-Length": "8"}), 1024, 0.05)
    assert armed == [0.05]  # a body still arriving is bounded as before
