"""Anthropic Messages: `POST {base_url}/v1/messages` (base_url as the anthropic SDK takes it)."""

from __future__ import annotations

from gateway.providers.base import Provider
from gateway.wire import WireFormat


class AnthropicProvider(Provider):
    kind = WireFormat.ANTHROPIC

    def url(self) -> str:
        return f"{self.config.base_url}/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "text/event-stream",
                   "anthropic-version": self.config.anthropic_version}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers
