"""Azure OpenAI: OpenAI chat on an Azure resource. The target's `model` names the deployment.

URL styles (`base_url` is the resource endpoint, `https://NAME.openai.azure.com`):
- v1 (api_version: v1): `{endpoint}/openai/v1/chat/completions`, the deployment as the body's `model`;
- deployments (api_version: a date): `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=`.
Auth: the `api-key` header, or an Entra ID bearer token from azure-identity (`DefaultAzureCredential`: env,
workload identity, managed identity, Azure CLI, ...), refreshed before it expires.

Azure's errors carry a `code` where OpenAI's carry a `type` (`content_filter`, `DeploymentNotFound`, "429"):
that code is the error type. A prompt refused by the content filter is a 400: the client's answer, not a
provider fault; a completion cut by it ends with finish_reason `content_filter`, as OpenAI's format says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

import aiohttp
import orjson

from gateway.config.clouds import AzureOptions
from gateway.config.model import ProviderConfig
from gateway.errors import FailureKind
from gateway.providers.auth import BearerAuth, Refreshing, azure_token
from gateway.providers.http import Endpoint, _read_sse
from gateway.wire import SSEEvent


def entra_credential() -> Any:
    """The Entra ID credential (tests replace it: a real one may reach Azure's token endpoints)."""
    from azure.identity import DefaultAzureCredential  # the `azure` extra: imported only when configured

    return DefaultAzureCredential()


def endpoint(config: ProviderConfig) -> Endpoint:
    options = config.cloud
    if not isinstance(options, AzureOptions):
        raise TypeError(f"{config.name}: an azure-openai provider needs AzureOptions")
    base = f"{config.base_url}/openai"
    if options.v1:
        urls = {"chat": f"{base}/v1/chat/completions", "embeddings": f"{base}/v1/embeddings"}
    else:
        query = f"?api-version={options.api_version}"
        urls = {"chat": f"{base}/deployments/{{model}}/chat/completions{query}",
                "embeddings": f"{base}/deployments/{{model}}/embeddings{query}"}
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    if options.auth == "entra":
        token = Refreshing(partial(azure_token, entra_credential(), options.entra_scope), what="Entra ID token")
        return Endpoint(urls, headers, auth=BearerAuth(token), decode=read_azure_sse, errors=read_error)
    headers["api-key"] = config.api_key
    return Endpoint(urls, headers, decode=read_azure_sse, errors=read_error)


async def read_azure_sse(content: aiohttp.StreamReader, name: str) -> AsyncIterator[list[SSEEvent]]:
    """Azure's SSE without its leading prompt-filter chunk (no id, no model, no choices): passed on, it would
    give a translated answer an empty id and model, and a client a chunk no other provider sends."""
    leading = True
    async for batch in _read_sse(content, name):
        if leading:
            batch = [e for e in batch if not _prompt_filter_only(e.data)]
            leading = not batch
            if not batch:
                continue
        yield batch


def _prompt_filter_only(data: Mapping[str, Any]) -> bool:
    return "prompt_filter_results" in data and not data.get("choices") and not data.get("usage")


def read_error(raw: bytes, headers: Mapping[str, str]) -> tuple[str, str, FailureKind | None]:
    """`{"error": {"message", "type", "code", "innererror"}}`: the code stands in for a missing type."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace").strip(), "", None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", "", None
    inner = err.get("innererror")
    code = err.get("code")
    if isinstance(inner, dict) and inner.get("code") == "ResponsibleAIPolicyViolation":
        code = "content_filter"
    error_type = err.get("type") or code
    return str(err.get("message", "")), str(error_type or ""), None
