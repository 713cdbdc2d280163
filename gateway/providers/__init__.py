"""Provider adapters: one small interface (`Provider`), one HTTP implementation, an endpoint per provider kind."""

from collections.abc import Callable

from gateway.config.clouds import ProviderKind
from gateway.config.model import ProviderConfig
from gateway.providers import anthropic, azure, bedrock, openai, vertex
from gateway.providers.http import Endpoint, HttpProvider
from gateway.providers.protocol import Provider, UpstreamRequest

__all__ = ["Endpoint", "HttpProvider", "Provider", "UpstreamRequest", "create_provider"]

# Each kind's module builds its endpoint; the cloud kinds import their credential library only here, when a
# provider of that kind is configured.
_ENDPOINTS: dict[ProviderKind, Callable[[ProviderConfig], Endpoint]] = {
    ProviderKind.OPENAI: openai.endpoint, ProviderKind.ANTHROPIC: anthropic.endpoint,
    ProviderKind.AZURE_OPENAI: azure.endpoint, ProviderKind.BEDROCK: bedrock.endpoint,
    ProviderKind.VERTEX: vertex.endpoint}


def create_provider(config: ProviderConfig) -> Provider:
    return HttpProvider(config, _ENDPOINTS[ProviderKind(config.kind)](config))
