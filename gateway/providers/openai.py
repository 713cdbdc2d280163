"""OpenAI Chat Completions (and any OpenAI-compatible server): `POST {base_url}/chat/completions`; with
`responses: true` the server also speaks the Responses API natively, at `POST {base_url}/responses`."""

from __future__ import annotations

from gateway.config.model import ProviderConfig
from gateway.providers.http import Endpoint


def endpoint(config: ProviderConfig) -> Endpoint:
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    if config.api_key:
        headers["authorization"] = f"Bearer {config.api_key}"
    base = config.base_url
    urls = {"chat": f"{base}/chat/completions", "embeddings": f"{base}/embeddings"}
    if config.responses:  # named after the wire format: the provider then `speaks` it (see HttpProvider)
        urls["responses"] = f"{base}/responses"
    return Endpoint(urls, headers)
