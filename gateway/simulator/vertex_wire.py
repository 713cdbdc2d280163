"""Google Vertex AI's Anthropic endpoints, as the simulator speaks them, and a Google OAuth token endpoint.

Routes: `POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:streamRawPredict`
(Anthropic SSE), `...:rawPredict` (the Anthropic message as JSON), `.../models/count-tokens:rawPredict`.
The body is Anthropic's without `model` (it is in the URL; token counts name it in the body) and with
`anthropic_version`. Auth: `Authorization: Bearer` with the profile's `require_key` or a token this
simulator issued from `POST /token`.

`POST /token` is the token endpoint a service-account file names as `token_uri`: it takes google-auth's
JWT-bearer grant, checks the assertion's claims (not its RSA signature: the simulator has no key registry)
and issues a short opaque access token, so a test drives google-auth's real refresh flow.
Google's own errors (auth, quota, unknown model) are `{"error": {"code", "message", "status"}}`; the
model's errors are Anthropic's.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.simulator.anthropic_wire import AnthropicDialect
from gateway.simulator.chat import BadRequest, ChatRequest

_GOOGLE = {401: ("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access "
                 "token, login cookie or other valid authentication credential. See "
                 "https://developers.google.com/identity/sign-in/web/devconsole-project."),
           403: ("PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource (or it may "
                 "not exist)."),
           404: ("NOT_FOUND", "Publisher Model was not found or your project does not have access to it."),
           429: ("RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/"
                 "online_prediction_requests_per_base_model with base model: anthropic-claude. Please submit a "
                 "quota increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.")}
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCE = "https://oauth2.googleapis.com/token"  # a grant's `aud`, whatever URL the file names as token_uri
TOKEN_LIFETIME_S = 3600


def google_error(status: int, message: str | None = None) -> bytes:
    name, text = _GOOGLE[status]
    return orjson.dumps({"error": {"code": status, "message": message or text, "status": name}})


class VertexDialect(AnthropicDialect):
    """One request's dialect: the model from the URL; `tokens` are the access tokens `/token` issued."""

    request_id_header = "x-vertex-request-id"

    def __init__(self, model: str | None, tokens: set[str]) -> None:
        self.model, self._tokens = model, tokens

    def parse_request(self, body: object) -> ChatRequest:
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        if not isinstance(body.get("anthropic_version"), str):
            raise BadRequest("anthropic_version: Field required", param="anthropic_version")
        return super().parse_request({**body, "model": self.model} if self.model is not None else body)

    def error_body(self, status: int, message: str, *, code: str | None = None,
                   param: str | None = None) -> bytes:
        if status in _GOOGLE:  # Google's front door answers these; the model's errors are Anthropic's
            return google_error(status)
        return super().error_body(status, message, code=code, param=param)

    def authorize(self, request: web.Request, raw: bytes, required: str) -> tuple[int, str, str] | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and (token == required or token in self._tokens):
            return None
        return 401, _GOOGLE[401][1], "UNAUTHENTICATED"


def issue_token(form: dict[str, str], tokens: set[str], seq: int) -> tuple[int, dict[str, Any]]:
    """The OAuth answer to a JWT-bearer grant: (status, JSON body), RFC 6749 error names on refusal."""
    if form.get("grant_type") != GRANT:
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
    claims = _claims(form.get("assertion", ""))
    if claims is None:
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: malformed."}
    now = time.time()
    if claims.get("aud") != AUDIENCE:
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: audience is not the token URL."}
    if not str(claims.get("iss", "")).endswith(".iam.gserviceaccount.com"):
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < now:
        return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be a short-lived "
                                                                    "token (60 minutes) and in a reasonable timeframe."}
    if "cloud-platform" not in str(claims.get("scope", "")):
        return 400, {"error": "invalid_scope", "error_description": "Bad Request"}
    token = f"ya29.sim-{seq}-{int(now * 1000)}"
    tokens.add(token)
    return 200, {"access_token": token, "expires_in": TOKEN_LIFETIME_S, "token_type": "Bearer"}


def _claims(assertion: str) -> dict[str, Any] | None:
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None
