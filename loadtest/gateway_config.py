"""The gateway config each policy runs with, generated from the scenario and the simulators' addresses."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtest.clouds import provider_keys
from loadtest.spec import Policy, ProviderSpec

# Keys a policy may set on the alias; everything else about the route comes from the scenario's providers.
POLICY_KEYS = ("hedge", "timeout_s", "targets", "default_max_tokens", "resume", "stream_stall_ms")


def target_of(provider: ProviderSpec) -> dict[str, Any]:
    target: dict[str, Any] = {"provider": provider.name, "model": provider.model}
    if provider.price_configured:  # else the gateway's catalog prices it, cache reads and writes included
        target["price"] = {"input_per_mtok": provider.price.input_per_mtok,
                           "output_per_mtok": provider.price.output_per_mtok}
    return target


def warm_alias(alias: str, provider: str) -> str:
    """The alias a policy's warm-up requests to `provider` go through (their cost is kept apart from the load's)."""
    return f"{alias}-warm-{provider}"


def route_config(providers: Sequence[ProviderSpec], policy: Policy) -> dict[str, Any]:
    """The alias's config: targets in scenario order (or the policy's order of provider names), then the policy."""
    by_name = {p.name: p for p in providers}
    route = copy.deepcopy(policy.route)
    names = route.pop("targets", None)
    order = [p.name for p in providers] if names is None else list(names)
    return {"targets": [target_of(by_name[name]) for name in order], **route}


def gateway_config(providers: Sequence[ProviderSpec], policy: Policy, alias: str, sim_urls: Mapping[str, str],
                   port: int, traces_file: str, files_dir: Path | None = None) -> dict[str, Any]:
    """A complete gateway config mapping (written as YAML for `gateway serve --config`). A cloud kind's key
    files (Vertex's service account) are written to `files_dir` (default: the temp dir)."""
    files = files_dir if files_dir is not None else Path(tempfile.gettempdir())
    return {
        "server": {"host": "127.0.0.1", "port": port},
        "providers": {
            p.name: {**provider_keys(p.kind, p.name, sim_urls[p.name], files), **copy.deepcopy(p.gateway)}
            for p in providers
        },
        "models": {alias: route_config(providers, policy),
                   **{warm_alias(alias, name): {"targets": [target_of(p) for p in providers if p.name == name],
                                                "hedge": "off"} for name in policy.warm}},
        "telemetry": {"traces_file": traces_file},
    }
