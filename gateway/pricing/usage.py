"""Billed usage and what it costs: one attempt's tokens split the way providers bill them.

The split is the same for every wire format once read (the formats report it differently, see README "Costs"):
`input_tokens` is every prompt token, of which `cache_read_tokens` were read from the provider's prompt cache
and `cache_write_tokens` written to it (`cache_write_long_tokens` of those with the long TTL); the rest is
uncached input. `output_tokens` includes `reasoning_tokens`, billed at the output price.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import Price

_PER = 1_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0  # every prompt token: uncached, cache reads and cache writes
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # all TTLs
    cache_write_long_tokens: int = 0  # of the writes, those with the long TTL (Anthropic 1 h)
    output_tokens: int = 0  # reasoning included
    reasoning_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        # Clamped: a provider reporting more cached than prompt tokens must not make a negative cost.
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    @property
    def cache(self) -> str:
        """What this usage says of the provider's prompt cache: warm (read), cold (written only), or none."""
        if self.cache_read_tokens:
            return "warm"
        return "cold" if self.cache_write_tokens else "none"


NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Cost:
    """USD by part. The parts add up to `total_usd`; `input_usd` is the uncached input."""

    input_usd: float = 0.0
    cache_read_usd: float = 0.0
    cache_write_usd: float = 0.0
    output_usd: float = 0.0

    @property
    def total_usd(self) -> float:
        return self.input_usd + self.cache_read_usd + self.cache_write_usd + self.output_usd

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.input_usd + other.input_usd, self.cache_read_usd + other.cache_read_usd,
                    self.cache_write_usd + other.cache_write_usd, self.output_usd + other.output_usd)


NO_COST = Cost()


def cost(price: Price, usage: Usage) -> Cost:
    """What `usage` costs at `price` (its long-context tier chosen by the whole prompt's size)."""
    p = price.at(usage.input_tokens)
    read = p.cache_read_per_mtok if p.cache_read_per_mtok is not None else p.input_per_mtok
    write = p.cache_write_per_mtok if p.cache_write_per_mtok is not None else p.input_per_mtok
    long = p.cache_write_long_per_mtok if p.cache_write_long_per_mtok is not None else write
    long_tokens = min(usage.cache_write_long_tokens, usage.cache_write_tokens)
    return Cost(
        input_usd=usage.uncached_input_tokens * p.input_per_mtok / _PER,
        cache_read_usd=usage.cache_read_tokens * read / _PER,
        cache_write_usd=((usage.cache_write_tokens - long_tokens) * write + long_tokens * long) / _PER,
        output_usd=usage.output_tokens * p.output_per_mtok / _PER,
    )
