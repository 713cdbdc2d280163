"""The HTTP server: OpenAI and Anthropic front doors in front of the hedging engine."""

from gateway.server.app import build_app
from gateway.server.gateway import Gateway

__all__ = ["Gateway", "build_app"]
