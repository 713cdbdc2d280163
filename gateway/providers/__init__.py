"""Provider adapters: one small interface (`Provider`), one implementation per wire format."""

from gateway.config.model import ProviderConfig
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider
from gateway.providers.openai import OpenAIProvider
from gateway.wire import WireFormat

__all__ = ["AnthropicProvider", "OpenAIProvider", "Provider", "create_provider"]


def create_provider(config: ProviderConfig) -> Provider:
    if config.kind is WireFormat.OPENAI:
        return OpenAIProvider(config)
    return AnthropicProvider(config)
