"""Prices from the config and from the pinned genai-prices catalog: which wins, what it costs, what is unknown."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import genai_prices
import pytest

from gateway.cli import describe
from gateway.config import parse_config
from gateway.config.model import Price
from gateway.pricing.catalog import catalog_version, lookup
from gateway.pricing.usage import Usage, cost
from gateway.server import Gateway


def config(targets: list[dict[str, Any]], kind: str = "anthropic", base_url: str = "http://127.0.0.1:9") -> Any:
    return parse_config({"providers": {"p": {"kind": kind, "base_url": base_url}},
                         "models": {"m": {"targets": targets}}}, {})


def test_the_catalog_version_is_the_pinned_one() -> None:
    assert catalog_version() == genai_prices.__version__ == "0.2.3"


def test_catalog_prices_are_used_when_none_are_configured() -> None:
    price = config([{"provider": "p", "model": "claude-sonnet-4-5"}]).models["m"].targets[0].price
    assert (price.input_per_mtok, price.cache_read_per_mtok, price.cache_write_per_mtok,
            price.cache_write_long_per_mtok, price.output_per_mtok) == (3.0, 0.3, 3.75, 6.0, 15.0)
    assert price.source == "catalog"
    assert price.tiers and price.tiers[0][0] == 200_000  # the long-context tier


def test_configured_prices_win_and_the_catalog_fills_the_rest() -> None:
    price = config([{"provider": "p", "model": "claude-sonnet-4-5",
                     "price": {"input_per_mtok": 2.5, "cache_write_1h_per_mtok": 5}}]).models["m"].targets[0].price
    assert (price.input_per_mtok, price.cache_write_long_per_mtok) == (2.5, 5.0)  # configured
    assert (price.cache_read_per_mtok, price.output_per_mtok) == (0.3, 15.0)  # from the catalog
    assert price.source == "config+catalog"
    assert price.tiers[0][1].input_per_mtok == 2.5  # a configured price holds at every prompt size


def test_a_fully_configured_price_does_not_consult_the_catalog() -> None:
    full = {"input_per_mtok": 1, "output_per_mtok": 2, "cache_read_per_mtok": 0.5, "cache_write_per_mtok": 1.5,
            "cache_write_1h_per_mtok": 3}
    price = config([{"provider": "p", "model": "claude-sonnet-4-5", "price": full}]).models["m"].targets[0].price
    assert price == Price(1, 2, 0.5, 1.5, 3.0, source="config")


def test_the_provider_is_found_by_url_before_kind() -> None:
    # An OpenAI-compatible provider at DeepSeek's URL is priced as DeepSeek, not looked up among OpenAI's models.
    entry = lookup("openai", "https://api.deepseek.com/v1", "deepseek-chat")
    assert entry is not None and entry.provider_id == "deepseek"
    assert lookup("openai", "http://127.0.0.1:8000/v1", "deepseek-chat") is None  # no guess from the name


def test_an_unknown_unpriced_target_costs_nothing_and_is_warned_about_at_start(caplog: Any) -> None:
    cfg = config([{"provider": "p", "model": "my-local-llama"}], kind="openai")
    price = cfg.models["m"].targets[0].price
    assert price.source == "none" and cost(price, Usage(input_tokens=1000, output_tokens=10)).total_usd == 0
    with caplog.at_level(logging.WARNING, logger="gateway.server"):
        Gateway(cfg)
    assert any("p/my-local-llama: no price configured" in r.getMessage() for r in caplog.records)
    assert "warning: p/my-local-llama: no price configured" in describe(cfg)
    assert "genai-prices 0.2.3" in describe(cfg)


@pytest.mark.parametrize(("kind", "model", "usage"), [
    ("anthropic", "claude-sonnet-4-5", Usage(98_101, 90_000, 8_001, 0, 564, 64)),
    ("anthropic", "claude-sonnet-4-5", Usage(98_101, 90_000, 8_001, 3_000, 564)),  # some 1 h writes
    ("anthropic", "claude-sonnet-4-5", Usage(250_000, 200_000, 10_000, 0, 900)),  # past the 200k tier
    ("anthropic", "claude-haiku-4-5", Usage(5_000, 0, 4_000, 0, 100)),
    ("openai", "gpt-5.6-terra", Usage(300_000, 250_000, 40_000, 0, 2_000, 500)),  # past the 272k tier
    ("openai", "gpt-4o-mini", Usage(10_000, 8_192, 0, 0, 300)),
])
def test_our_cost_equals_the_catalogs_own_calculation(kind: str, model: str, usage: Usage) -> None:
    entry = lookup(kind, "http://127.0.0.1:9", model)
    assert entry is not None
    theirs = genai_prices.calc_price(genai_prices.Usage(
        input_tokens=usage.input_tokens, cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens, cache_write_1h_tokens=usage.cache_write_long_tokens,
        output_tokens=usage.output_tokens), model, provider_id=entry.provider_id,
        genai_request_timestamp=datetime.now(tz=UTC))
    assert abs(cost(entry.price, usage).total_usd - float(theirs.total_price)) < 1e-9
