"""Reads a scenario YAML file into a `Scenario`, naming the field of every error.

Layout (every key but `providers` and `policies` is optional):

    name: heavy-tail                 # default: the file name without .yaml
    seed: 42
    alias: chat                      # the model name clients send
    providers:                       # priority order: the first is the primary
      primary:
        kind: openai                 # the wire format the gateway speaks to it: openai | anthropic
        price: {input_per_mtok: 0.5, output_per_mtok: 1.5}
        profile: {ttft: {median_ms: 150, sigma: 1.0}, stall_prob: 0.02, stall_ms: 3000}
        breaker: {fail_max: 5, reset_timeout_s: 5}   # timeout_s, breaker, ...: passed to the gateway config
    traffic: {rate: 40, duration_s: 20, stream_share: 0.5, anthropic_share: 0.3,
              prompt_tokens: [100, 800], max_tokens: 256, request_timeout_s: 30,
              door: responses}              # optional: every request through one door (openai, anthropic,
                                            # responses) instead of the anthropic_share mix
              # prompt_tokens / max_tokens may also be {quantiles: [[0, 80], [0.5, 300], [1, 2000]]};
              # rates: [[0, 20], [60, 45]] makes the arrival rate piecewise constant (start_s, rate)
    # Claude-Code-like sessions instead: request i is turn i // 8 of session i % 8, with a 100k-token cached prefix
    #   traffic: {sessions: 8, cached_prefix_tokens: 100000, prompt_tokens: [200, 600], ...}
    changes: [{at_s: 10, provider: primary, profile: {ttft: 2000}}]   # merged onto the provider's profile
    policies:                        # each: keys merged into the alias's gateway config
      no-hedge: {hedge: off}
      fixed-200ms: {hedge: {delay_ms: 200}}
      warm-backup: {hedge: {delay_ms: 200}, warm: [secondary]}   # the backup's prompt cache warmed first
    baseline: no-hedge               # default: the first policy with hedging off
    source: {...}                    # free-form: what a fitted scenario was fitted from (`loadtest fit`)
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from gateway.config import ConfigError
from gateway.config.load import parse_config
from gateway.config.model import Price
from gateway.simulator import parse_profile
from loadtest.clouds import KINDS, SIM_KEYS
from loadtest.gateway_config import POLICY_KEYS, gateway_config
from loadtest.spec import Door, IntRange, Kind, Policy, ProfileChange, ProviderSpec, Scenario, Traffic

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # used as a directory and file name
_TOP_KEYS = ("name", "description", "seed", "alias", "providers", "traffic", "changes", "policies", "baseline",
             "hard_timeout_s", "source")
_PROVIDER_KEYS = ("kind", "model", "price", "profile", "seed", "timeout_s", "connect_timeout_s",
                  "max_connections", "breaker", "responses", "prefill")
_GATEWAY_PROVIDER_KEYS = ("timeout_s", "connect_timeout_s", "max_connections", "breaker", "responses", "prefill")
_TRAFFIC_KEYS = ("rate", "duration_s", "count", "request_timeout_s", "stream_share", "anthropic_share",
                 "prompt_tokens", "max_tokens", "door", "rates",
                 "sessions", "cached_prefix_tokens")
DOORS = ("openai", "anthropic", "responses")


class ScenarioError(ValueError):
    """A scenario problem, always naming the field: `traffic.rate: must be > 0, got 0`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError("", f"cannot read scenario file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError("", f"{path} is not valid YAML: {exc}") from None
    return parse_scenario(data, default_name=path.name.removesuffix(".yaml").removesuffix(".yml"))


def parse_scenario(data: object, default_name: str = "scenario") -> Scenario:
    root = _mapping("", data)
    _only("", root, _TOP_KEYS)
    name = _string("name", root.get("name", default_name))
    if not _NAME.match(name):
        raise ScenarioError("name", f"must be letters, digits, '.', '_' or '-' (it names the output folder), "
                                    f"got {name!r}")
    seed = _integer("seed", root.get("seed", 1))
    alias = _string("alias", root.get("alias", "chat"))
    providers = _parse_providers(root.get("providers"), seed)
    traffic = _parse_traffic(_mapping("traffic", root.get("traffic", {})))
    changes = _parse_changes(root.get("changes", []), providers)
    policies = _parse_policies(root.get("policies"), providers, alias)
    baseline = _parse_baseline(root.get("baseline"), policies)
    hard = root.get("hard_timeout_s")
    source = root.get("source")
    return Scenario(
        name=name, description=_string("description", root.get("description", "")), seed=seed, alias=alias,
        providers=providers, traffic=traffic, changes=changes, policies=policies, baseline=baseline,
        hard_timeout_s=None if hard is None else _number("hard_timeout_s", hard, above=0),
        source=None if source is None else dict(_mapping("source", source)),
    )


def _parse_providers(value: object, seed: int) -> tuple[ProviderSpec, ...]:
    section = _mapping("providers", value)
    if not section:
        raise ScenarioError("providers", "at least one provider is required")
    out: list[ProviderSpec] = []
    for index, (raw_name, raw) in enumerate(section.items()):
        name = str(raw_name)
        path = f"providers.{name}"
        p = _mapping(path, raw)
        _only(path, p, _PROVIDER_KEYS)
        kind = p.get("kind")
        if kind not in KINDS:
            raise ScenarioError(f"{path}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
        price = _mapping(f"{path}.price", p.get("price", {}))
        _only(f"{path}.price", price, ("input_per_mtok", "output_per_mtok"))
        # A cloud's simulator checks the credentials the gateway is given (see loadtest.clouds).
        profile = {**({"require_key": SIM_KEYS[kind]} if kind in SIM_KEYS else {}),
                   **_mapping(f"{path}.profile", p.get("profile", {}))}
        _check_profile(f"{path}.profile", profile)
        model = _string(f"{path}.model", p.get("model", "sim-model"))
        out.append(ProviderSpec(
            name=name, kind=cast(Kind, kind), model=model,
            price=Price(input_per_mtok=_number(f"{path}.price.input_per_mtok", price.get("input_per_mtok", 0), low=0),
                        output_per_mtok=_number(f"{path}.price.output_per_mtok", price.get("output_per_mtok", 0),
                                                low=0)) if "price" in p else _catalog_price(str(kind), model),
            price_configured="price" in p, profile=profile,
            seed=_integer(f"{path}.seed", p.get("seed", seed + index + 1)),
            gateway={k: p[k] for k in _GATEWAY_PROVIDER_KEYS if k in p},
        ))
    return tuple(out)


def _catalog_price(kind: str, model: str) -> Price:
    """Without a price the gateway uses its catalog's: the counter-based cross-check uses the same."""
    from gateway.pricing.catalog import lookup

    entry = lookup(kind, "http://127.0.0.1", model)
    return entry.price if entry is not None else Price(source="none")


def _check_profile(path: str, profile: dict[str, Any]) -> None:
    try:
        parse_profile(profile)
    except ValueError as exc:
        # The simulator's messages start with the field's path inside the profile: `ttft.sigma: must be >= 0`.
        inner, sep, message = str(exc).partition(": ")
        raise (ScenarioError(f"{path}.{inner}", message) if sep else ScenarioError(path, str(exc))) from None


def _parse_traffic(t: Mapping[str, Any]) -> Traffic:
    _only("traffic", t, _TRAFFIC_KEYS)
    count = t.get("count")
    door = t.get("door")
    if door is not None and door not in DOORS:
        raise ScenarioError("traffic.door", f"must be one of {', '.join(DOORS)}, got {door!r}")
    traffic = Traffic(
        rate=_number("traffic.rate", t.get("rate", 20), above=0),
        duration_s=_number("traffic.duration_s", t.get("duration_s", 20), above=0),
        count=None if count is None else _integer("traffic.count", count, low=1),
        request_timeout_s=_number("traffic.request_timeout_s", t.get("request_timeout_s", 30), above=0),
        stream_share=_number("traffic.stream_share", t.get("stream_share", 0.5), low=0, high=1),
        anthropic_share=_number("traffic.anthropic_share", t.get("anthropic_share", 0.0), low=0, high=1),
        prompt_tokens=_int_range("traffic.prompt_tokens", t.get("prompt_tokens", 200)),
        max_tokens=_int_range("traffic.max_tokens", t.get("max_tokens", 256)),
        door=cast(Door | None, door),
        rates=_rates("traffic.rates", t.get("rates", [])),
        sessions=_integer("traffic.sessions", t.get("sessions", 0), low=0),
        cached_prefix_tokens=_integer("traffic.cached_prefix_tokens", t.get("cached_prefix_tokens", 0), low=0),
    )
    if traffic.cached_prefix_tokens and not traffic.sessions:
        raise ScenarioError("traffic.cached_prefix_tokens", "needs traffic.sessions (the prefix is a session's)")
    return traffic


def _rates(path: str, value: object) -> tuple[tuple[float, float], ...]:
    """[[start_s, rate], ...]: starting at 0, starts increasing, rates >= 0 and not all 0."""
    pairs = _pairs(path, value)
    if not pairs:
        return ()
    if pairs[0][0] != 0:
        raise ScenarioError(f"{path}[0][0]", f"the first rate must start at 0, got {pairs[0][0]:g}")
    for i, (start, rate) in enumerate(pairs):
        if i and start <= pairs[i - 1][0]:
            raise ScenarioError(f"{path}[{i}][0]", f"starts must increase, got {start:g} after {pairs[i - 1][0]:g}")
        if rate < 0:
            raise ScenarioError(f"{path}[{i}][1]", f"must be >= 0, got {rate:g}")
    if not any(rate > 0 for _, rate in pairs):
        raise ScenarioError(path, "at least one rate must be > 0")
    return tuple(pairs)


def _pairs(path: str, value: object) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise ScenarioError(path, f"must be a list of pairs, got {_type_name(value)}")
    out: list[tuple[float, float]] = []
    for i, item in enumerate(value):
        if not isinstance(item, list) or len(item) != 2:
            raise ScenarioError(f"{path}[{i}]", "must be a pair of numbers")
        out.append((_number(f"{path}[{i}][0]", item[0]), _number(f"{path}[{i}][1]", item[1])))
    return out


def _parse_changes(value: object, providers: tuple[ProviderSpec, ...]) -> tuple[ProfileChange, ...]:
    if not isinstance(value, list):
        raise ScenarioError("changes", f"must be a list, got {_type_name(value)}")
    by_name = {p.name: p for p in providers}
    out: list[ProfileChange] = []
    for i, raw in enumerate(value):
        path = f"changes[{i}]"
        c = _mapping(path, raw)
        _only(path, c, ("at_s", "provider", "profile"))
        provider = _string(f"{path}.provider", c.get("provider"))
        if provider not in by_name:
            raise ScenarioError(f"{path}.provider", f"unknown provider {provider!r} (known: {', '.join(by_name)})")
        # Merged onto the provider's own profile, so a change names only what changes.
        profile = {**by_name[provider].profile, **_mapping(f"{path}.profile", c.get("profile"))}
        _check_profile(f"{path}.profile", profile)
        out.append(ProfileChange(at_s=_number(f"{path}.at_s", c.get("at_s"), low=0), provider=provider,
                                 profile=profile))
    return tuple(sorted(out, key=lambda change: change.at_s))


def _parse_policies(value: object, providers: tuple[ProviderSpec, ...], alias: str) -> tuple[Policy, ...]:
    section = _mapping("policies", value)
    if not section:
        raise ScenarioError("policies", "at least one policy is required")
    known = [p.name for p in providers]
    out: list[Policy] = []
    for raw_name, raw in section.items():
        name = str(raw_name)
        path = f"policies.{name}"
        if not _NAME.match(name):
            raise ScenarioError(path, "a policy name must be letters, digits, '.', '_' or '-'")
        route = dict(_mapping(path, raw))
        _only(path, route, (*POLICY_KEYS, "warm"))
        warm = route.pop("warm", [])
        if not isinstance(warm, list) or any(w not in known for w in warm):
            raise ScenarioError(f"{path}.warm", f"must be a list of provider names ({', '.join(known)})")
        targets = route.get("targets")
        if targets is not None and (not isinstance(targets, list) or not targets
                                    or any(t not in known for t in targets)):
            raise ScenarioError(f"{path}.targets", f"must be a non-empty list of provider names ({', '.join(known)})")
        policy = Policy(name=name, route=route, warm=tuple(warm))
        _check_with_gateway(path, providers, policy, alias)
        out.append(policy)
    return tuple(out)


def _check_with_gateway(path: str, providers: tuple[ProviderSpec, ...], policy: Policy, alias: str) -> None:
    """Run the gateway's own config parser now, so a bad policy fails before any process starts."""
    urls = {p.name: "http://127.0.0.1:9" for p in providers}
    with tempfile.TemporaryDirectory() as files:
        data = gateway_config(providers, policy, alias, urls, port=1, traces_file="", files_dir=Path(files))
        try:
            parse_config(data, {})
        except ConfigError as exc:
            field = exc.field
            prefix = f"models.{alias}"
            if field.startswith(prefix):  # the alias's keys are the policy's keys
                field = path + field[len(prefix):]
            message = str(exc).removeprefix(f"{exc.field}: ")
            raise ScenarioError(field, message) from None


def _parse_baseline(value: object, policies: tuple[Policy, ...]) -> str | None:
    if value is None:
        return next((p.name for p in policies if not p.hedges), None)
    name = _string("baseline", value)
    if name not in [p.name for p in policies]:
        raise ScenarioError("baseline", f"unknown policy {name!r} (known: {', '.join(p.name for p in policies)})")
    return name


# ---- small typed readers ---------------------------------------------------------------------------------------


def _mapping(path: str, value: object) -> Mapping[str, Any]:
    if value is None:
        raise ScenarioError(path, "is required")
    if not isinstance(value, Mapping):
        raise ScenarioError(path, f"must be a mapping, got {_type_name(value)}")
    return value


def _only(path: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise ScenarioError(where, f"unknown key (expected one of: {', '.join(allowed)})")


def _string(path: str, value: object) -> str:
    if value is None:
        raise ScenarioError(path, "is required")
    if not isinstance(value, str):
        raise ScenarioError(path, f"must be a string, got {_type_name(value)}")
    return value


def _number(path: str, value: object, *, low: float | None = None, high: float | None = None,
            above: float | None = None) -> float:
    if value is None:
        raise ScenarioError(path, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(path, f"must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise ScenarioError(path, f"must be >= {low:g}, got {value}")
    if high is not None and value > high:
        raise ScenarioError(path, f"must be <= {high:g}, got {value}")
    if above is not None and value <= above:
        raise ScenarioError(path, f"must be > {above:g}, got {value}")
    return float(value)


def _integer(path: str, value: object, *, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScenarioError(path, f"must be a whole number, got {value!r}")
    if low is not None and value < low:
        raise ScenarioError(path, f"must be >= {low}, got {value}")
    return value


def _int_range(path: str, value: object) -> IntRange:
    """A whole number, a [low, high] pair to draw from uniformly, or {quantiles: [[q, value], ...]}."""
    if isinstance(value, Mapping):
        _only(path, value, ("quantiles",))
        return _quantile_range(f"{path}.quantiles", value.get("quantiles"))
    if isinstance(value, list):
        if len(value) != 2:
            raise ScenarioError(path, f"must be a number or a [low, high] pair, got {len(value)} items")
        low, high = _integer(f"{path}[0]", value[0], low=1), _integer(f"{path}[1]", value[1], low=1)
        if high < low:
            raise ScenarioError(f"{path}[1]", f"must be >= {low}, got {high}")
        return IntRange(low, high)
    n = _integer(path, value, low=1)
    return IntRange(n, n)


def _quantile_range(path: str, value: object) -> IntRange:
    table = _pairs(path, value)
    if len(table) < 2 or table[0][0] != 0 or table[-1][0] != 1:
        raise ScenarioError(path, "needs [q, value] points from q = 0 to q = 1")
    for i, (q, v) in enumerate(table):
        if i and (q <= table[i - 1][0] or v < table[i - 1][1]):
            raise ScenarioError(f"{path}[{i}]", "q must increase and values must not decrease")
    if table[0][1] < 1:
        raise ScenarioError(f"{path}[0][1]", f"must be >= 1, got {table[0][1]:g}")
    low = math.ceil(table[0][1])
    return IntRange(low, max(low, math.floor(table[-1][1])), tuple(table))


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__
