"""OpenAI Chat Completions (and any OpenAI-compatible server): `POST {base_url}/chat/completions`."""

from __future__ import annotations

from gateway.providers.base import Provider
from gateway.wire import WireFormat


class OpenAIProvider(Provider):
    kind = WireFormat.OPENAI

    def url(self) -> str:
        return f"{self.config.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers
