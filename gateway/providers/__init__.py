"""Provider adapters: one small interface (`Provider`), one HTTP implementation, an endpoint per provider kind."""

from collections.abc import Callable

from gateway.config.model import ProviderConfig
from gateway.providers import anthropic, openai
from gateway.providers.http import Endpoint, HttpProvider
from gateway.providers.protocol import Provider, UpstreamRequest
from gateway.wire import WireFormat

__all__ = ["Endpoint", "HttpProvider", "Provider", "UpstreamRequest", "create_provider"]

_ENDPOINTS: dict[WireFormat, Callable[[ProviderConfig], Endpoint]] = {
    WireFormat.OPENAI: openai.endpoint, WireFormat.ANTHROPIC: anthropic.endpoint}


def create_provider(config: ProviderConfig) -> Provider:
    return HttpProvider(config, _ENDPOINTS[config.kind](config))
