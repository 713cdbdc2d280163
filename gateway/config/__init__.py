"""Configuration: frozen data (`model`) and the one module that reads files and the environment (`load`)."""

from gateway.config.load import ConfigError, load_config, parse_config
from gateway.config.model import (
    GatewayConfig,
    HedgeConfig,
    ModelRoute,
    Price,
    ProviderConfig,
    ServerConfig,
    StateConfig,
    Target,
    TelemetryConfig,
)

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "HedgeConfig",
    "ModelRoute",
    "Price",
    "ProviderConfig",
    "ServerConfig",
    "StateConfig",
    "Target",
    "TelemetryConfig",
    "load_config",
    "parse_config",
]
