"""One request on the wire: the OpenAI or Anthropic body, sent with aiohttp, the answer read and timed.

Raw HTTP rather than the SDKs: the SDKs add retries, their own timeouts and parsing cost, all of which would
blur what is measured. Times are loop times; latency and TTFT count from the *scheduled* send time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from loadtest.schedule import PlannedRequest

# The simulator (and the gateway's estimate) count prompt tokens as characters // 4: four characters a word.
_WORD = "tok "
_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "responses": "/v1/responses"}
_HEADERS = {
    "openai": {"content-type": "application/json", "authorization": "Bearer loadtest"},
    "responses": {"content-type": "application/json", "authorization": "Bearer loadtest"},
    "anthropic": {"content-type": "application/json", "x-api-key": "loadtest", "anthropic-version": "2023-06-01"},
}


@dataclass(slots=True)
class RequestResult:
    index: int
    door: str
    stream: bool
    scheduled_s: float  # the planned send time, seconds after the run's start
    send_lag_s: float = 0.0  # how much later than planned it actually went out (load generator health)
    latency_s: float | None = None  # scheduled time to the end of a successful answer
    ttft_s: float | None = None  # scheduled time to the first content token (streams only)
    status: int = 0  # HTTP status; 0 when no response arrived (connection error, timeout)
    error: str | None = None  # None: a complete, successful answer
    provider: str | None = None  # the gateway's x-gateway-provider header: who won
    attempts: int | None = None  # the gateway's x-gateway-attempts header
    input_tokens: int = 0  # reported by the answer's usage, else the prompt's size
    output_tokens: int = 0  # reported by the answer's usage, else the content events counted

    @property
    def ok(self) -> bool:
        return self.error is None


def prompt_text(tokens: int) -> str:
    return _WORD * tokens


def session_body(alias: str, req: PlannedRequest) -> dict[str, Any]:
    """A Claude Code turn: the session's long system prompt and its earlier turns, `cache_control` on the system
    prompt and on the newest turn (the earlier turns lose theirs, as Claude Code's do), the new user text last."""
    mark = {"type": "ephemeral"}
    # Every token is one "tok " (the simulator counts characters / 4); the session's name makes its prompt its own.
    system = [{"type": "text", "text": f"s{req.session:03d} " + _WORD * (req.prefix_tokens - 1), "cache_control": mark}]
    messages: list[dict[str, Any]] = []
    for turn, tokens in enumerate((*req.history, req.prompt_tokens)):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"t{turn:03d} " + _WORD * (tokens - 1)}]})
        if turn < len(req.history):
            messages.append({"role": "assistant", "content": [{"type": "text", "text": f"done {turn}."}]})
    messages[-1]["content"][-1]["cache_control"] = mark
    return {"model": alias, "max_tokens": req.max_tokens, "system": system, "messages": messages}


def request_body(alias: str, req: PlannedRequest) -> bytes:
    body: dict[str, Any]
    if req.session >= 0:
        body = session_body(alias, req)
        if req.stream:
            body["stream"] = True
        return orjson.dumps(body)
    if req.door == "responses":
        # The API's floor for max_output_tokens is 16. Stored (the API's default), as a client would leave it.
        responses: dict[str, Any] = {"model": alias, "input": prompt_text(req.prompt_tokens),
                                     "max_output_tokens": max(16, req.max_tokens)}
        if req.stream:
            responses["stream"] = True
        return orjson.dumps(responses)
    messages = [{"role": "user", "content": prompt_text(req.prompt_tokens)}]
    body = {"model": alias, "max_tokens": req.max_tokens, "messages": messages}
    if req.stream:
        body["stream"] = True
        if req.door == "openai":
            body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


def request_path(door: str) -> str:
    return _PATHS[door]


def request_headers(door: str, api_key: str | None = None) -> dict[str, str]:
    """The door's headers, with `api_key` as the gateway key (a deployment that checks keys) when given."""
    headers = dict(_HEADERS[door])
    if api_key is not None:
        headers["authorization" if door == "openai" else "x-api-key"] = (
            f"Bearer {api_key}" if door == "openai" else api_key)
    return headers


async def send_request(session: aiohttp.ClientSession, base_url: str, alias: str, req: PlannedRequest,
                       scheduled_at: float, timeout_s: float, api_key: str | None = None) -> RequestResult:
    """Send one planned request now; never raises (except cancellation): failures are in the result."""
    loop = asyncio.get_running_loop()
    result = RequestResult(index=req.index, door=req.door, stream=req.stream, scheduled_s=req.at_s,
                           send_lag_s=max(0.0, loop.time() - scheduled_at), input_tokens=req.prompt_tokens)
    try:
        async with asyncio.timeout_at(scheduled_at + timeout_s):
            async with session.post(base_url + _PATHS[req.door], data=request_body(alias, req),
                                    headers=_HEADERS[req.door] if api_key is None else
                                    request_headers(req.door, api_key)) as resp:
                result.status = resp.status
                result.provider = resp.headers.get("x-gateway-provider")
                attempts = resp.headers.get("x-gateway-attempts")
                result.attempts = int(attempts) if attempts and attempts.isdigit() else None
                if resp.status != 200:
                    await resp.read()
                    result.error = f"http {resp.status}"
                elif req.stream:
                    await _read_stream(resp, req.door, result, scheduled_at)
                else:
                    _read_usage(orjson.loads(await resp.read()), req.door, result)
    except TimeoutError:
        result.error = "timeout"
    except (aiohttp.ClientError, OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        result.error = type(exc).__name__
    if result.error is None:
        result.latency_s = loop.time() - scheduled_at
    return result


async def _read_stream(resp: aiohttp.ClientResponse, door: str, result: RequestResult, scheduled_at: float) -> None:
    """Parse SSE line by line: note the first content event's time, count tokens, catch in-stream errors."""
    loop = asyncio.get_running_loop()
    counted = 0
    reported: int | None = None
    event = ""
    finished = False
    async for raw in resp.content:
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"event:"):
            event = line[6:].strip().decode()
            continue
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            finished = True
            continue
        data = orjson.loads(payload)
        if not isinstance(data, dict):
            continue
        if door == "responses":
            kind = data.get("type", event)
            if kind in ("error", "response.failed"):
                result.error = "stream error"
                return
            if kind == "response.output_text.delta":
                counted += 1
            elif kind in ("response.completed", "response.incomplete"):
                finished = True
                response = data.get("response")
                usage = response.get("usage") if isinstance(response, dict) else None
                if isinstance(usage, dict):
                    reported = usage.get("output_tokens", reported)
                    _take_input_tokens(usage, "input_tokens", result)
        elif door == "openai":
            if "error" in data:
                result.error = "stream error"
                return
            if _openai_has_content(data):
                counted += 1
            usage = data.get("usage")
            if isinstance(usage, dict):
                reported = usage.get("completion_tokens", reported)
                _take_input_tokens(usage, "prompt_tokens", result)
        else:
            kind = data.get("type", event)
            if kind == "error":
                result.error = "stream error"
                return
            if kind == "content_block_delta":
                counted += 1
            elif kind == "message_start":
                message = data.get("message")
                _take_input_tokens(message.get("usage") if isinstance(message, dict) else None, "input_tokens",
                                   result)
            elif kind == "message_delta":
                usage = data.get("usage")
                if isinstance(usage, dict):
                    reported = usage.get("output_tokens", reported)
                # A gateway translating an OpenAI upstream learns the prompt size only at the end: message_start
                # says 0 and message_delta carries the real count.
                _take_input_tokens(usage, "input_tokens", result)
            elif kind == "message_stop":
                finished = True
        if counted and result.ttft_s is None:
            result.ttft_s = loop.time() - scheduled_at
    if not finished:
        result.error = "stream cut"
    result.output_tokens = reported if isinstance(reported, int) else counted


def _openai_has_content(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return True
    return False


def _take_input_tokens(usage: object, key: str, result: RequestResult) -> None:
    """Keep a reported prompt size only when it is a real count: 0 means "not known yet" in a stream's head."""
    value = usage.get(key) if isinstance(usage, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        result.input_tokens = value


def _read_usage(body: object, door: str, result: RequestResult) -> None:
    if not isinstance(body, dict):
        result.error = "bad body"
        return
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return
    _take_input_tokens(usage, "prompt_tokens" if door == "openai" else "input_tokens", result)
    output = usage.get("completion_tokens" if door == "openai" else "output_tokens")  # Responses: as Anthropic
    result.output_tokens = output if isinstance(output, int) else 0
