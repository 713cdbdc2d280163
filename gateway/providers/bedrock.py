"""Amazon Bedrock: Anthropic models through InvokeModelWithResponseStream, signed with SigV4.

`POST {base}/model/{modelId}/invoke-with-response-stream`, the Anthropic messages body without `model` (it is
in the URL) and `stream` (the operation is the stream), with `anthropic_version: bedrock-2023-05-31` and any
`anthropic-beta` header as the body's `anthropic_beta` list. The answer is an AWS event stream whose `chunk`
events carry Anthropic events (see `gateway.providers.eventstream`).

Signing is botocore's SigV4 signer over each request (body hash included); credentials are the config's, else
botocore's default chain (env, shared files and profiles, SSO, container and instance roles), frozen and
re-read off the event loop so that botocore's own refresh (before expiry) is picked up. `auth: api-key`
sends a Bedrock API key as a bearer token instead.

Errors: the type is in the `x-amzn-ErrorType` header (or the body's `__type`), the message in the body's
`message`. ThrottlingException (429) and ServiceQuotaExceededException (400) are rate limits: the target
cools down; 5xx, ModelErrorException (424) and ModelTimeoutException (408) are faults.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from gateway.config.clouds import BedrockOptions
from gateway.config.model import ProviderConfig
from gateway.errors import FailureKind
from gateway.providers.auth import Refreshing
from gateway.providers.eventstream import read_bedrock_stream
from gateway.providers.http import Endpoint
from gateway.providers.protocol import UpstreamRequest

ANTHROPIC_VERSION = "bedrock-2023-05-31"
STREAM_TYPE = "application/vnd.amazon.eventstream"
SERVICE = "bedrock"
_RECHECK_S = 120.0  # refreshable credentials are re-frozen this often (botocore refreshes 10-15 min early)
_KINDS = {"ThrottlingException": FailureKind.RATE_LIMITED, "ServiceQuotaExceededException": FailureKind.RATE_LIMITED,
          "ModelNotReadyException": FailureKind.RATE_LIMITED, "ModelErrorException": FailureKind.FAULT,
          "ModelTimeoutException": FailureKind.FAULT, "ServiceUnavailableException": FailureKind.FAULT,
          "InternalServerException": FailureKind.FAULT}


def endpoint(config: ProviderConfig) -> Endpoint:
    options = config.cloud
    if not isinstance(options, BedrockOptions):
        raise TypeError(f"{config.name}: a bedrock provider needs BedrockOptions")
    urls = {"chat": f"{config.base_url}/model/{{model}}/invoke-with-response-stream"}
    headers = {"content-type": "application/json", "accept": STREAM_TYPE}
    auth = None
    if options.auth == "api-key":
        headers["authorization"] = f"Bearer {config.api_key}"
    else:
        auth = SigV4(aws_credentials(options), options.region)
    return Endpoint(urls, headers, auth=auth, shape=shape, stream_type=STREAM_TYPE, decode=read_bedrock_stream,
                    errors=read_error)


def aws_credentials(options: BedrockOptions) -> Callable[[], Any]:
    """A blocking loader of botocore credentials: the configured pair, else the profile's or the default chain.
    botocore is imported now, at startup (the `bedrock` extra, only when configured), not in the first request."""
    import botocore.credentials
    import botocore.session

    def load() -> Any:
        if options.access_key_id:
            return botocore.credentials.Credentials(options.access_key_id, options.secret_access_key,
                                                    options.session_token or None)
        return botocore.session.Session(profile=options.aws_profile or None).get_credentials()

    return load


class SigV4:
    """Per-request SigV4 headers (`Auth`): authorization, x-amz-date and, for temporary credentials,
    x-amz-security-token. The signature covers the host, the content type, the accept header and the body."""

    def __init__(self, load: Callable[[], Any], region: str, service: str = SERVICE) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        self._signer, self._request = SigV4Auth, AWSRequest
        self._load = load
        self._source: Any = None
        self._region, self._service = region, service
        self.credentials: Refreshing[Any] = Refreshing(self._freeze, what="AWS credentials", margin_s=60.0,
                                                       urgent_s=30.0)

    def _freeze(self) -> tuple[Any, float]:
        """Runs in a thread: resolving the chain may read files, run a process or call a metadata service."""
        from botocore.credentials import RefreshableCredentials

        if self._source is None:
            self._source = self._load()
            if self._source is None:
                raise LookupError("no AWS credentials found by the default chain")
        frozen = self._source.get_frozen_credentials()  # refreshes first when botocore says it is due
        refreshable = isinstance(self._source, RefreshableCredentials)
        return frozen, (time.time() + _RECHECK_S) if refreshable else float("inf")

    async def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Mapping[str, str]:
        credentials = await self.credentials.get()
        request = self._request(method=method, url=url, headers=dict(headers), data=body)
        self._signer(credentials, self._service, self._region).add_auth(request)
        signed = request.headers
        out = {"authorization": signed["Authorization"], "x-amz-date": signed["X-Amz-Date"]}
        if credentials.token:
            out["x-amz-security-token"] = credentials.token
        return out

    def secrets(self) -> tuple[str, ...]:
        current = self.credentials.current
        return (current.token,) if current is not None and current.token else ()

    async def aclose(self) -> None:
        await self.credentials.aclose()


def shape(request: UpstreamRequest) -> UpstreamRequest:
    body = {k: v for k, v in request.body.items() if k not in ("model", "stream")}
    body["anthropic_version"] = ANTHROPIC_VERSION
    for name, value in request.headers.items():
        if name.lower() == "anthropic-beta":  # Bedrock takes betas in the body; headers are not forwarded
            body["anthropic_beta"] = [beta.strip() for beta in value.split(",") if beta.strip()]
    return UpstreamRequest(body, {}, operation=request.operation)


def read_error(raw: bytes, headers: Mapping[str, str]) -> tuple[str, str, FailureKind | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        body = {}
    # `ThrottlingException:http://internal.amazon.com/coral/...`, or a body `__type` of `...#ThrottlingException`.
    error_type = (headers.get("x-amzn-ErrorType") or str(body.get("__type") or "")).split(":")[0].rpartition("#")[2]
    message = str(body.get("message") or body.get("Message") or "")  # redacted, then bounded, by the caller
    if not message and not body:
        message = raw.decode(errors="replace").strip()
    return message, error_type, _KINDS.get(error_type)
