"""Prices the config leaves out, from the maintained `genai-prices` catalog: its bundled data only.

Looked up once per target when the config is loaded (never per request), offline: the package's own snapshot
(`genai_prices.data`), never its `UpdatePrices` fetcher. The version is pinned in pyproject, so a price
changes only with a deliberate upgrade; `gateway check-config` prints it.

Which of the catalog's providers: the one whose API URL pattern matches the provider's `base_url` (so an
OpenAI-compatible provider at api.deepseek.com is priced as DeepSeek), else the one of the provider's kind.
A model that provider does not list is unknown: no guess from another provider's model of a similar name
(a self-hosted model must not inherit a cloud's price). Dated price changes are resolved at load time;
service tiers (flex, priority, batch) are not: standard prices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from importlib.metadata import version
from typing import Any

from gateway.config.model import GatewayConfig, Price

CATALOG = "genai-prices"

# The catalog's provider for each provider kind: the wire formats, and the clouds that serve them.
KIND_PROVIDERS: Mapping[str, str] = {"openai": "openai", "anthropic": "anthropic", "responses": "openai",
                                     "azure": "azure", "bedrock": "aws", "vertex": "google"}

# Config price keys and the catalog's keys for them, first found wins (a model priced per modality has
# `input_text_mtok` where others have `input_mtok`).
_FIELDS: Mapping[str, tuple[str, ...]] = {
    "input_per_mtok": ("input_mtok", "input_text_mtok"),
    "output_per_mtok": ("output_mtok", "output_text_mtok"),
    "cache_read_per_mtok": ("cache_read_mtok", "cache_text_read_mtok"),
    "cache_write_per_mtok": ("cache_write_5m_mtok", "cache_write_mtok", "cache_text_write_mtok"),
    "cache_write_long_per_mtok": ("cache_write_1h_mtok",),
}
PRICE_FIELDS = tuple(_FIELDS)


@cache
def catalog_version() -> str:
    return version(CATALOG)


def catalog_name() -> str:
    return f"{CATALOG} {catalog_version()}"


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    provider_id: str  # the catalog's provider
    model_id: str  # the catalog's model the target's model matched
    price: Price  # source "catalog"


def lookup(kind: str, base_url: str, model: str, when: datetime | None = None) -> CatalogEntry | None:
    """The catalog's price for `model` served by a provider of `kind` at `base_url`, or None if unknown."""
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    when = when or datetime.now(tz=UTC)
    for provider in _candidates(snapshot.providers, kind, base_url):
        info = provider.find_model(model, all_providers=snapshot.providers)
        if info is not None:
            return CatalogEntry(provider.id, info.id, _price(info.get_prices(when)))
    return None


def _candidates(providers: list[Any], kind: str, base_url: str) -> Iterable[Any]:
    seen = set()
    for provider in providers:
        if re.match(provider.api_pattern, base_url):
            seen.add(provider.id)
            yield provider
    wanted = KIND_PROVIDERS.get(kind)
    for provider in providers:
        if provider.id == wanted and provider.id not in seen:
            yield provider


def _price(model_price: Any) -> Price:
    """A catalog `ModelPrice` as a `Price`: base prices, and one full `Price` per long-context tier start."""
    values = {name: _first(model_price, keys) for name, keys in _FIELDS.items()}
    starts = sorted({tier.start for value in values.values() if _is_tiered(value) for tier in value.tiers})

    def at(start: int | None) -> Price:
        fields = {name: _at(value, start) for name, value in values.items()}
        return Price(input_per_mtok=fields["input_per_mtok"] or 0.0, output_per_mtok=fields["output_per_mtok"] or 0.0,
                     cache_read_per_mtok=fields["cache_read_per_mtok"],
                     cache_write_per_mtok=fields["cache_write_per_mtok"],
                     cache_write_long_per_mtok=fields["cache_write_long_per_mtok"], source="catalog")

    return replace(at(None), tiers=tuple((start, at(start)) for start in starts))


def _first(model_price: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = getattr(model_price, key, None)
        if value is not None:
            return value
    return None


def _is_tiered(value: Any) -> bool:
    return value is not None and not isinstance(value, Decimal)


def _at(value: Any, start: int | None) -> float | None:
    """The price per Mtok of a catalog value for prompts of more than `start` tokens (None: the base)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    chosen = value.base
    for tier in value.tiers:  # ascending; the catalog's rule: a tier applies above its start
        if start is not None and start >= tier.start:
            chosen = tier.price
    return float(chosen)


def merge(configured: Mapping[str, float], entry: CatalogEntry | None) -> Price:
    """The target's price: each configured field wins, the catalog fills the rest (its tiers too, for the
    fields the config does not set); with neither, source "none" and zeros."""
    fields: dict[str, Any] = dict(configured)  # field names of `Price`, checked by the config loader
    if entry is None:
        return Price(**fields, source="config" if configured else "none")
    if not configured:
        return entry.price
    catalog = entry.price
    tiers = tuple((start, replace(tier, **fields)) for start, tier in catalog.tiers)
    return replace(catalog, **fields, tiers=tiers, source="config+catalog")


def describe(price: Price) -> str:
    """One line for check-config: every price and where it came from."""
    def money(value: float | None, fallback: str) -> str:
        return f"${value:g}" if value is not None else fallback

    parts = [f"in {money(price.input_per_mtok, '$0')}", f"out {money(price.output_per_mtok, '$0')}",
             f"cache read {money(price.cache_read_per_mtok, 'as input')}",
             f"cache write {money(price.cache_write_per_mtok, 'as input')}",
             f"1h write {money(price.cache_write_long_per_mtok, 'as write')}"]
    tiers = f", +{len(price.tiers)} long-context tier(s) above {price.tiers[0][0]} tokens" if price.tiers else ""
    return f"{', '.join(parts)} per Mtok{tiers}; from {price.source}"


def unpriced_warnings(config: GatewayConfig) -> list[str]:
    """One line per target that neither the config nor the catalog prices: its cost is traced as 0."""
    unpriced = {t.label: t for route in config.models.values() for t in route.targets if t.price.source == "none"}
    return [f"{label}: no price configured and {t.model!r} is not in the {catalog_name()} catalog for a "
            f"{config.providers[t.provider].kind} provider at {config.providers[t.provider].base_url}: "
            "its cost is counted as 0" for label, t in unpriced.items()]
