"""Anthropic Messages: `POST {base_url}/v1/messages` (base_url as the anthropic SDK takes it)."""

from __future__ import annotations

from gateway.config.model import ProviderConfig
from gateway.providers.http import Endpoint


def endpoint(config: ProviderConfig) -> Endpoint:
    # The configured version is a default: an Anthropic client's own `anthropic-version` is forwarded over it.
    headers = {"content-type": "application/json", "accept": "text/event-stream",
               "anthropic-version": config.anthropic_version}
    if config.api_key:
        headers["x-api-key"] = config.api_key
    base = config.base_url
    return Endpoint({"chat": f"{base}/v1/messages", "count_tokens": f"{base}/v1/messages/count_tokens"}, headers)
