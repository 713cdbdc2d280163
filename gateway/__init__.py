"""A hedging LLM gateway: OpenAI- and Anthropic-compatible, races providers, cancels losers."""

__version__ = "0.1.0"
