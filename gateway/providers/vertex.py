"""Google Vertex AI: Anthropic models through `streamRawPredict`.

`POST {base}/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:streamRawPredict`, the
Anthropic messages body without `model` (it is in the URL) and with `anthropic_version: vertex-2023-10-16`;
the answer is Anthropic's SSE. Token counts: `.../models/count-tokens:rawPredict` (the model in the body).
Credentials: a service-account key file, else application-default credentials (which also read
GOOGLE_APPLICATION_CREDENTIALS, gcloud's user credentials, workload identity and the metadata server);
the OAuth access token is refreshed before it expires.

Errors come in two shapes: Anthropic's (the model's own: overloaded, invalid request) and Google's
(`{"error": {"code", "message", "status"}}`, sometimes in a list: auth, quota, unknown model).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from gateway.config.clouds import VertexOptions
from gateway.config.model import ProviderConfig
from gateway.errors import FailureKind
from gateway.providers.auth import BearerAuth, Refreshing, Token, google_token
from gateway.providers.http import Endpoint
from gateway.providers.protocol import UpstreamRequest

ANTHROPIC_VERSION = "vertex-2023-10-16"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def endpoint(config: ProviderConfig) -> Endpoint:
    options = config.cloud
    if not isinstance(options, VertexOptions):
        raise TypeError(f"{config.name}: a vertex provider needs VertexOptions")
    models = f"{config.base_url}/projects/{options.project}/locations/{options.region}/publishers/anthropic/models"
    urls = {"chat": f"{models}/{{model}}:streamRawPredict", "count_tokens": f"{models}/count-tokens:rawPredict"}
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    token = Refreshing(google_fetch(options.credentials_file), what="Google access token")
    return Endpoint(urls, headers, auth=BearerAuth(token), shape=shape, errors=read_error)


def google_fetch(credentials_file: str) -> Callable[[], Token]:
    """A blocking fetch of a fresh access token: the credentials are loaded at the first call (ADC may run
    a subprocess or ask the metadata server), then refreshed on each. google-auth is imported now, at startup
    (the `vertex` extra, only when configured), not in the first request."""
    import google.auth
    import google.auth.transport.requests
    import google.oauth2.service_account

    loaded: list[Any] = []

    def fetch() -> Token:
        if not loaded:
            if credentials_file:  # a service-account key (the config checked its type)
                credentials = google.oauth2.service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    credentials_file, scopes=[SCOPE])
            else:
                credentials, _ = google.auth.default(scopes=[SCOPE])
            loaded.extend((credentials, google.auth.transport.requests.Request()))
        return google_token(loaded[0], loaded[1])

    return fetch


def shape(request: UpstreamRequest) -> UpstreamRequest:
    """The Vertex body: `anthropic_version` in it, `model` out of it (but for token counts, which name the
    model in the body). Only `anthropic-beta` of the forwarded headers means anything to Vertex."""
    body = {**request.body, "anthropic_version": ANTHROPIC_VERSION}
    if request.operation != "count_tokens":
        body.pop("model", None)
    betas = {k: v for k, v in request.headers.items() if k.lower() == "anthropic-beta"}
    return UpstreamRequest(body, betas, operation=request.operation)


def read_error(raw: bytes, headers: Mapping[str, str]) -> tuple[str, str, FailureKind | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace").strip(), "", None
    if isinstance(body, list) and body:  # Google's streaming methods wrap the error in a list
        body = body[0]
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", "", None
    # Anthropic's `type`, else Google's `status` (RESOURCE_EXHAUSTED, UNAUTHENTICATED, ...).
    return str(err.get("message", "")), str(err.get("type") or err.get("status") or ""), None
