"""The floor: the least work any gateway of this design does for an OpenAI chat request, and nothing more.

The performance benchmark's second yardstick (the first, `loadtest.passthrough`, forwards bytes): it does the
mechanical work the gateway cannot avoid on the same stack (aiohttp on both sides, orjson) and none of its
features. The request is parsed and sent upstream as a stream with usage (so that a losing attempt could be cut
off); every event is parsed (the first token and the usage are in them); a streaming client gets the events as
they came, a non-streaming one the `chat.completion` assembled from them. No key, validation, routing, hedge,
breaker, budget, accounting, metrics or log. What the gateway costs above this line is the price of its features;
below it, nothing written in Python on this stack can go.

    python -m loadtest.floor --upstream http://127.0.0.1:9001 --port 9101
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from loadtest.passthrough import SESSION, UPSTREAM, proxy_app, run, serve_app

_HEADERS = {"content-type": "application/json", "authorization": "Bearer floor"}


async def chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    stream = body.get("stream") is True
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    url = request.app[UPSTREAM] + "/v1/chat/completions"
    async with request.app[SESSION].post(url, data=orjson.dumps(body), headers=_HEADERS) as upstream:
        if stream:
            return await _forward(request, upstream.content)
        return web.Response(body=orjson.dumps(await _assemble(upstream.content)), content_type="application/json")


async def _events(content: aiohttp.StreamReader) -> AsyncIterator[tuple[list[bytes], list[dict[str, Any]]]]:
    """Each read's complete events: their raw `data: ...` blocks and their parsed JSON, up to `[DONE]`."""
    rest = b""
    while chunk := await content.readany():
        blocks = (rest + chunk).split(b"\n\n")
        rest = blocks.pop()
        raw = [block for block in blocks if block.startswith(b"data: ") and block != b"data: [DONE]"]
        yield raw, [orjson.loads(block[6:]) for block in raw]


async def _forward(request: web.Request, content: aiohttp.StreamReader) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    async for raw, _parsed in _events(content):  # parsed: the first token and the usage are read from them
        if raw:
            await resp.write(b"\n\n".join(raw) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def _assemble(content: aiohttp.StreamReader) -> dict[str, Any]:
    first: dict[str, Any] | None = None
    parts: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] | None = None
    async for _raw, parsed in _events(content):
        for event in parsed:
            first = first or event
            if choices := event.get("choices"):
                choice = choices[0]
                if text := choice.get("delta", {}).get("content"):
                    parts.append(text)
                finish = choice.get("finish_reason") or finish
            usage = event.get("usage") or usage
    head = first or {}
    return {"id": head.get("id", ""), "object": "chat.completion", "created": head.get("created", 0),
            "model": head.get("model", ""), "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)},
                         "finish_reason": finish, "logprobs": None}]}


def build_app(upstream: str) -> web.Application:
    app = proxy_app(upstream, auto_decompress=True)  # as the gateway's provider pools
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="base URL of an OpenAI-format provider (no /v1)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    run(serve_app(build_app(args.upstream), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
