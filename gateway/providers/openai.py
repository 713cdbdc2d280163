"""OpenAI Chat Completions (and any OpenAI-compatible server): `POST {base_url}/chat/completions`."""

from __future__ import annotations

from gateway.config.model import ProviderConfig
from gateway.providers.http import Endpoint


def endpoint(config: ProviderConfig) -> Endpoint:
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    if config.api_key:
        headers["authorization"] = f"Bearer {config.api_key}"
    base = config.base_url
    return Endpoint({"chat": f"{base}/chat/completions", "embeddings": f"{base}/embeddings"}, headers)
