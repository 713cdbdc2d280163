"""Amazon Bedrock's runtime API for Anthropic models, as the simulator speaks it.

`POST /model/{modelId}/invoke-with-response-stream` (an AWS event stream of `chunk` events, each
`{"bytes": base64(Anthropic event)}`) and `POST /model/{modelId}/invoke` (the Anthropic message as JSON).
The body is Anthropic's without `model` and `stream` (Bedrock refuses both as extraneous keys) and with
`anthropic_version`. Auth is SigV4 for service `bedrock` (see `sigv4`), or a Bedrock API key as a bearer token.
Errors are `{"message"}` with the type in `x-amzn-ErrorType`; failures after the first event are exception
frames (`:message-type: exception`), as Bedrock sends them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.providers.eventstream import encode_message
from gateway.simulator import sigv4
from gateway.simulator.anthropic_wire import AnthropicDialect, AnthropicEncoder
from gateway.simulator.chat import BadRequest, ChatRequest, Finish
from gateway.simulator.control import same_key

STREAM_TYPE = "application/vnd.amazon.eventstream"
_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
          408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
          500: "InternalServerException", 503: "ServiceUnavailableException"}
_MESSAGES = {429: "Too many requests, please wait before trying again.",
             503: "Bedrock is unable to process your request.",
             500: "The system encountered an unexpected error during processing. Try your request again."}
_STREAM_EXCEPTIONS = {429: "throttlingException", 503: "serviceUnavailableException", 500: "internalServerException"}
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"
_CHUNK_HEADERS = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}


def error_type(status: int, code: str | None) -> str:
    return code or _TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")


class BedrockDialect(AnthropicDialect):
    """One request's dialect: the model and whether it streams come from the URL."""

    request_id_header = "x-amzn-RequestId"

    def __init__(self, model: str, stream: bool) -> None:
        self.model, self.stream = model, stream
        self.stream_headers = {"Content-Type": STREAM_TYPE, "X-Amzn-Bedrock-Content-Type": "application/json"}

    def parse_request(self, body: object) -> ChatRequest:
        if not isinstance(body, dict):
            raise BadRequest("Malformed input request, please reformat your input and try again.")
        for key in ("model", "stream"):
            if key in body:
                raise BadRequest(f"Malformed input request: #: extraneous key [{key}] is not permitted, please "
                                 f"reformat your input and try again.")
        if not isinstance(body.get("anthropic_version"), str):
            raise BadRequest("Malformed input request: #: required key [anthropic_version] not found, please "
                             "reformat your input and try again.")
        return super().parse_request({**body, "model": self.model, "stream": self.stream})

    def encoder(self, request: ChatRequest, seq: int) -> BedrockEncoder:  # type: ignore[override]  # frames, not SSE
        return BedrockEncoder(request, seq)

    def error_body(self, status: int, message: str, *, code: str | None = None,
                   param: str | None = None) -> bytes:
        message = _MESSAGES.get(status, message)  # Bedrock's own words where it has fixed ones
        return orjson.dumps({"message": message})

    def error_headers(self, status: int, code: str | None, headers: Mapping[str, str]) -> dict[str, str]:
        # No Retry-After: Bedrock's throttling answers carry none.
        return {k: v for k, v in headers.items() if k.lower() != "retry-after"} | {
            "x-amzn-ErrorType": f"{error_type(status, code)}:http://internal.amazon.com/coral/com.amazon.bedrock/"}

    def authorize(self, request: web.Request, raw: bytes, required: str) -> tuple[int, str, str] | None:
        """SigV4 against `required` = `ACCESS_KEY_ID:SECRET_ACCESS_KEY` (a bare secret accepts any key id), or
        a Bedrock API key (`Authorization: Bearer`) equal to `required`."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer":
            if same_key(token.strip(), required):
                return None
            return 403, "Authentication failed: Please make sure your API Key is valid.", "AccessDeniedException"
        key_id, sep, secret = required.partition(":")
        try:
            sigv4.verify(request.method, request.raw_path, request.headers, raw, access_key=key_id if sep else None,
                         secret_key=secret if sep else required, service="bedrock")
        except sigv4.Refused as refused:
            return refused.status, refused.message, refused.error_type
        return None


class BedrockEncoder:
    """The Anthropic events of `AnthropicEncoder`, each framed as a Bedrock `chunk` event."""

    __slots__ = ("_inner", "_request", "_seq")

    def __init__(self, request: ChatRequest, seq: int) -> None:
        self._inner = AnthropicEncoder(request, seq)
        self._request, self._seq = request, seq

    def response_body(self, output_tokens: int, finish: Finish) -> bytes:
        return self._inner.response_body(output_tokens, finish)

    def stream_open(self) -> bytes:
        return _frames(self._inner.stream_open(), self._seq)

    def stream_text_open(self) -> bytes:
        return _frames(self._inner.stream_text_open(), self._seq)

    def stream_token(self, index: int) -> bytes:
        return _frames(self._inner.stream_token(index), index)

    def stream_tool_open(self) -> bytes:
        return _frames(self._inner.stream_tool_open(), self._seq)

    def stream_tool_piece(self, piece: str) -> bytes:
        return _frames(self._inner.stream_tool_piece(piece), len(piece))

    def stream_close(self, output_tokens: int, finish: Finish) -> bytes:
        # Bedrock adds its invocation metrics to the last event.
        metrics = {"inputTokenCount": self._request.input_tokens, "outputTokenCount": output_tokens,
                   "invocationLatency": 0, "firstByteLatency": 0}
        return _frames(self._inner.stream_close(output_tokens, finish), self._seq,
                       last_extra={"amazon-bedrock-invocationMetrics": metrics})

    def stream_error(self, status: int) -> bytes:
        exception = _STREAM_EXCEPTIONS.get(status, "modelStreamErrorException")
        payload: dict[str, Any] = {"message": _MESSAGES.get(status, "The model stream failed (simulated).")}
        if exception == "modelStreamErrorException":
            payload |= {"originalStatusCode": status, "originalMessage": "Internal server error"}
        return encode_message({":exception-type": exception, ":content-type": "application/json",
                               ":message-type": "exception"}, orjson.dumps(payload))


def _frames(sse: bytes, pad: int, last_extra: Mapping[str, Any] | None = None) -> bytes:
    """Reframe SSE events (`event: x\\ndata: {...}\\n\\n`) as event-stream chunks. The `p` field pads each
    chunk to a varying length, as Bedrock does, so the size of a frame does not give away its token."""
    out = []
    blocks = [b for b in sse.split(b"\n\n") if b]
    for i, block in enumerate(blocks):
        data = block[block.index(b"data: ") + 6:]
        if last_extra and i == len(blocks) - 1:
            data = orjson.dumps({**orjson.loads(data), **last_extra})
        chunk = {"bytes": base64.b64encode(data).decode(), "p": _PADDING[:1 + pad % len(_PADDING)]}
        out.append(encode_message(_CHUNK_HEADERS, orjson.dumps(chunk)))
    return b"".join(out)
