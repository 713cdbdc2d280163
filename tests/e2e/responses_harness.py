"""What the Responses door's end-to-end tests share: a config with providers marked `responses: true`, the
simulated providers by name, and what a simulator received, read in its own format."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from gateway.config import GatewayConfig
from gateway.simulator import SimulatedProvider
from tests.e2e.harness import Upstream, config_for

OTHER_KEY = "gw-other-key-5678"  # a second gateway key: it must never see the first key's responses


def responses_config(sims: Mapping[str, tuple[str, Upstream]], models: dict[str, Any], *, native: tuple[str, ...],
                     **extra: Any) -> GatewayConfig:
    """`config_for`, with the providers named in `native` speaking the Responses API natively."""
    config = config_for(sims, models, **extra)
    providers = {name: dataclasses.replace(p, responses=name in native) for name, p in config.providers.items()}
    return dataclasses.replace(config, providers=providers)


def received_texts(sim: SimulatedProvider) -> list[str]:
    """Every text the simulator's last request carried, in order, whatever its wire format (the conversation
    as the provider saw it: instructions, user turns, the model's earlier answers, tool results)."""
    body = sim.stats.last_body
    texts: list[str] = []
    _collect(body.get("system"), texts)
    _collect(body.get("instructions"), texts)
    _collect(body.get("messages") if "messages" in body else body.get("input"), texts)
    return texts


def _collect(value: object, texts: list[str]) -> None:
    if isinstance(value, str):
        texts.append(value)
    elif isinstance(value, list):
        for item in value:
            _collect(item, texts)
    elif isinstance(value, dict):
        for key in ("text", "content", "output"):
            _collect(value.get(key), texts)
