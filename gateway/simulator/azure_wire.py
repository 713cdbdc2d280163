"""Azure OpenAI's chat API, as the simulator speaks it: OpenAI chat with Azure's URLs, auth, errors and
content-filter annotations.

Routes: `POST /openai/deployments/{deployment}/chat/completions?api-version=...` (the deployment in the URL;
without api-version Azure answers 404) and the v1 style `POST /openai/v1/chat/completions` (the deployment as
the body's `model`); embeddings likewise. Auth: the `api-key` header, or `Authorization: Bearer` (an Entra ID
token; on v1 also the key itself), checked against the profile's `require_key`.

Azure's content filter depends on the content; the simulator's on two markers in the messages:
`FILTER_PROMPT` refuses the prompt (400, code `content_filter`, as Azure words it), `FILTER_COMPLETION`
cuts the answer after one token with finish_reason `content_filter`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from gateway.simulator.chat import BadRequest, ChatRequest, Finish
from gateway.simulator.control import same_key
from gateway.simulator.openai_wire import OpenAIDialect, OpenAIEncoder

FILTER_PROMPT = "sim:content-filter-prompt"
FILTER_COMPLETION = "sim:content-filter-completion"
_FILTER_MESSAGE = ("The response was filtered due to the prompt triggering Azure OpenAI's content management "
                   "policy. Please modify your prompt and retry. To learn more about our content filtering "
                   "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_SAFE = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}
_HARMFUL = {**_SAFE, "violence": {"filtered": True, "severity": "high"}}
_MESSAGES = {
    401: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
         "for an active subscription and use a correct regional API endpoint for your resource.",
    429: "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
         "exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second.",
    500: "The server had an error while processing your request. Sorry about that!",
}
_BEARER_401 = ("Unauthorized. Access token is missing, invalid, audience is incorrect "
               "(https://cognitiveservices.azure.com), or have expired.")


class AzureDialect(OpenAIDialect):
    """One request's dialect: the deployment from the URL (deployments style) or the body (v1)."""

    request_id_header = "apim-request-id"

    def __init__(self, deployment: str | None) -> None:
        self.deployment = deployment
        self._filter_completion = False

    def parse_request(self, body: object) -> ChatRequest:
        if isinstance(body, dict) and self.deployment is not None:
            body = {**body, "model": self.deployment}  # Azure ignores the body's model on this style
        text = orjson.dumps(body.get("messages")) if isinstance(body, dict) else b""
        if FILTER_PROMPT.encode() in text:
            raise BadRequest(_FILTER_MESSAGE, param="prompt")
        chat = super().parse_request(body)
        if FILTER_COMPLETION.encode() in text:
            # One token, then the filter stops the answer (the encoder names the finish content_filter).
            self._filter_completion = True
            return ChatRequest(chat.model, chat.stream, 1, chat.input_tokens, chat.include_usage)
        return chat

    def encoder(self, request: ChatRequest, seq: int) -> AzureEncoder:
        return AzureEncoder(request, seq, self._filter_completion)

    def error_body(self, status: int, message: str, *, code: str | None = None,
                   param: str | None = None) -> bytes:
        if message == _FILTER_MESSAGE:
            return orjson.dumps({"error": {
                "message": message, "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": _HARMFUL}}})
        if status == 400:  # the model's own validation: OpenAI's shape passes through
            return super().error_body(status, message, code=code, param=param)
        if code == "bearer":
            return orjson.dumps({"error": {"code": "401", "message": _BEARER_401}})
        return orjson.dumps({"error": {"code": code if code and status != 401 else str(status),
                                       "message": _MESSAGES.get(status, message)}})

    def error_headers(self, status: int, code: str | None, headers: Mapping[str, str]) -> dict[str, str]:
        out = dict(headers)
        if "retry-after" in out:  # Azure sends both
            out["retry-after-ms"] = str(int(float(out["retry-after"]) * 1000))
        return out

    def authorize(self, request: web.Request, raw: bytes, required: str) -> tuple[int, str, str] | None:
        key = request.headers.get("api-key")
        if key is not None:
            return None if same_key(key.strip(), required) else (401, _MESSAGES[401], "401")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and same_key(token.strip(), required):
            return None
        return (401, _BEARER_401, "bearer") if scheme else (401, _MESSAGES[401], "401")


def api_version_refusal(request: web.Request) -> tuple[int, bytes] | None:
    """The deployments style needs a well-formed api-version; Azure answers without one as for a wrong URL."""
    version = request.query.get("api-version")
    if version is None:
        return 404, orjson.dumps({"error": {"code": "404", "message": "Resource not found"}})
    if not _API_VERSION.match(version):
        return 400, orjson.dumps({"error": {"code": "BadRequest", "message": "API version not supported"}})
    return None


class AzureEncoder(OpenAIEncoder):
    """OpenAI chunks, after Azure's first chunk of prompt filter results; content filter results in answers."""

    __slots__ = ("_filtered",)

    def __init__(self, request: ChatRequest, seq: int, filtered: bool) -> None:
        super().__init__(request, seq)
        self._filtered = filtered

    def response_body(self, output_tokens: int, finish: Finish) -> bytes:
        body: dict[str, Any] = orjson.loads(super().response_body(output_tokens, finish))
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _SAFE}]
        for choice in body["choices"]:
            choice["content_filter_results"] = _HARMFUL if self._filtered else _SAFE
            if self._filtered:
                choice["finish_reason"] = "content_filter"
        return orjson.dumps(body)

    def stream_open(self) -> bytes:
        # Azure's first chunk: no id, no model, no choices; only the prompt's filter results.
        first = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _SAFE}]}
        return b"data: " + orjson.dumps(first) + b"\n\n" + super().stream_open()

    def stream_close(self, output_tokens: int, finish: Finish) -> bytes:
        out = super().stream_close(output_tokens, finish)
        if self._filtered:  # the finish chunk comes first in `out`: name the filter as its reason
            out = out.replace(b'"finish_reason":"length"', b'"finish_reason":"content_filter"', 1)
        return out
