"""Reads a YAML config file and the environment into `GatewayConfig`, naming the field of every error.

This is the only module that reads files or environment variables for configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import yaml

from gateway.config.clouds import ProviderKind
from gateway.config.model import (
    MAX_ATTEMPTS_CAP,
    ApiKey,
    GatewayConfig,
    HedgeConfig,
    ModelRoute,
    Price,
    ProviderConfig,
    ResponsesConfig,
    ServerConfig,
    StateConfig,
    Target,
    TelemetryConfig,
)
from gateway.policies.breaker import BreakerOptions
from gateway.policies.budget import BudgetOptions
from gateway.policies.bulkhead import BulkheadOptions
from gateway.policies.cache import CacheOptions
from gateway.policies.latency import AdaptiveDelayOptions, parse_quantile
from gateway.policies.ratelimit import RateLimitOptions

N = TypeVar("N", int, float)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A config problem, always naming the field: `models.chat.targets[1].provider: unknown provider`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class _Section:
    """A mapping being read, with its dotted path for error messages; rejects unknown keys."""

    def __init__(self, data: object, path: str, env: Mapping[str, str]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a mapping, got {type(data).__name__}")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.env = env

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                raise ConfigError(self.at(str(key)), f"unknown key (expected one of: {', '.join(allowed)})")

    def raw(self, key: str) -> object:
        value = self.data.get(key)
        return _substitute(value, self.at(key), self.env) if isinstance(value, str) else value

    def section(self, key: str) -> _Section:
        return _Section(self.data.get(key), self.at(key), self.env)

    def string(self, key: str, default: str | None = None) -> str:
        value = self.raw(key)
        if value is None:
            if default is None:
                raise ConfigError(self.at(key), "is required")
            return default
        if not isinstance(value, str):
            raise ConfigError(self.at(key), f"must be a string, got {type(value).__name__}")
        return value

    def number(self, key: str, default: N, *, minimum: float | None = None,
               maximum: float | None = None, kind: type[N] = float) -> N:  # type: ignore[assignment]
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, str):
            try:
                value = float(value) if kind is float else int(value)
            except ValueError:
                raise ConfigError(self.at(key), f"must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.at(key), f"must be a number, got {type(value).__name__}")
        if kind is int and not float(value).is_integer():
            raise ConfigError(self.at(key), f"must be a whole number, got {value}")
        if minimum is not None and value < minimum:
            raise ConfigError(self.at(key), f"must be >= {minimum:g}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(self.at(key), f"must be <= {maximum:g}, got {value}")
        return kind(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.at(key), f"must be true or false, got {value!r}")
        return value


def _substitute(text: str, field: str, env: Mapping[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(field, f"environment variable {name} is not set")

    return _ENV_REF.sub(repl, text)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, os.environ if env is None else env)


def parse_config(data: object, env: Mapping[str, str]) -> GatewayConfig:
    root = _Section(data, "", env)
    root.only("server", "providers", "models", "telemetry", "state", "responses")
    providers = _parse_providers(root.section("providers"))
    models = _parse_models(root.section("models"), providers)
    return GatewayConfig(server=_parse_server(root.section("server")), providers=providers, models=models,
                         telemetry=_parse_telemetry(root.section("telemetry")),
                         state=_parse_state(root.section("state")),
                         responses=_parse_responses(root.section("responses")))


def _parse_server(s: _Section) -> ServerConfig:
    s.only("host", "port", "api_keys", "max_body_mb", "deadline_header", "limits", "shutdown_grace_s", "admin_key",
           "header_timeout_s", "body_timeout_s", "idle_timeout_s")
    raw_keys = s.data.get("api_keys") or []
    if not isinstance(raw_keys, list):
        raise ConfigError(s.at("api_keys"), "must be a list of keys (strings, or {key, name, limits})")
    keys: list[ApiKey] = []
    for i, raw in enumerate(raw_keys):
        field = f"{s.at('api_keys')}[{i}]"
        if isinstance(raw, str):
            keys.append(ApiKey(key=_non_empty(_substitute(raw, field, s.env), field), name=f"key-{i + 1}"))
            continue
        k = _Section(raw, field, s.env)
        k.only("key", "name", "limits")
        limits = _parse_limits(k.section("limits")) if "limits" in k.data else None
        keys.append(ApiKey(key=_non_empty(k.string("key"), k.at("key")), name=k.string("name", f"key-{i + 1}"),
                           limits=limits))
    return ServerConfig(
        host=s.string("host", "127.0.0.1"),
        port=s.number("port", 8080, minimum=0, maximum=65535, kind=int),
        keys=tuple(keys),
        max_body_mb=s.number("max_body_mb", 16.0, minimum=0.001),
        deadline_header=s.string("deadline_header", "x-gateway-timeout-s").lower(),
        limits=_parse_limits(s.section("limits")),
        shutdown_grace_s=s.number("shutdown_grace_s", 30.0, minimum=0),
        admin_key=s.string("admin_key", ""),
        # Zero would mean "no bound" in some servers and "close at once" in others: neither is wanted here.
        header_timeout_s=s.number("header_timeout_s", 10.0, minimum=0.001, maximum=3600),
        body_timeout_s=s.number("body_timeout_s", 60.0, minimum=0.001, maximum=3600),
        idle_timeout_s=s.number("idle_timeout_s", 75.0, minimum=0.001, maximum=86400),
    )


def _non_empty(value: str, field: str) -> str:
    if not value:
        raise ConfigError(field, "is empty")
    return value


def _parse_limits(s: _Section) -> RateLimitOptions:
    s.only("requests_per_minute", "tokens_per_minute")
    rpm = s.raw("requests_per_minute")
    tpm = s.raw("tokens_per_minute")
    return RateLimitOptions(
        requests_per_minute=None if rpm is None else s.number("requests_per_minute", 0, minimum=1, kind=int),
        tokens_per_minute=None if tpm is None else s.number("tokens_per_minute", 0, minimum=1, kind=int))


def _parse_providers(s: _Section) -> dict[str, ProviderConfig]:
    if not s.data:
        raise ConfigError("providers", "at least one provider is required")
    out: dict[str, ProviderConfig] = {}
    for name in s.data:
        p = s.section(str(name))
        kind_text = p.string("kind")
        try:
            kind = ProviderKind(kind_text)
        except ValueError:  # "responses" is a format an openai provider may also speak, not a kind
            raise ConfigError(p.at("kind"), f"must be one of {', '.join(ProviderKind)}, got {kind_text!r}") from None
        from gateway.config.load_clouds import CLOUD_KEYS, parse_cloud  # it imports this module

        p.only("kind", "base_url", "api_key", "timeout_s", "connect_timeout_s", "max_connections", "breaker",
               "anthropic_version", "max_concurrent", "pool_timeout_s", "responses", "prefill",
               *CLOUD_KEYS.get(kind, ()))
        responses = p.boolean("responses", False)
        if responses and kind is not ProviderKind.OPENAI:
            raise ConfigError(p.at("responses"), "only an openai provider can speak the Responses API "
                              f"({name} is {kind_text})")
        cloud, default_url = parse_cloud(p, kind)
        base_url = p.string("base_url", default_url).rstrip("/")
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(p.at("base_url"), f"must be an http(s) URL, got {base_url!r}")
        b = p.section("breaker")
        b.only("fail_max", "reset_timeout_s")
        out[str(name)] = ProviderConfig(
            name=str(name), kind=kind, base_url=base_url, api_key=p.string("api_key", ""),
            timeout_s=p.number("timeout_s", 60.0, minimum=0.001),
            connect_timeout_s=p.number("connect_timeout_s", 10.0, minimum=0.001),
            max_connections=p.number("max_connections", 256, minimum=1, kind=int),
            pool_timeout_s=p.number("pool_timeout_s", 10.0, minimum=0.001),
            breaker=BreakerOptions(fail_max=b.number("fail_max", 5, minimum=1, kind=int),
                                   reset_timeout_s=b.number("reset_timeout_s", 30.0, minimum=0.001)),
            anthropic_version=p.string("anthropic_version", "2023-06-01"), cloud=cloud,
            bulkhead=BulkheadOptions(max_concurrent=None if p.raw("max_concurrent") is None else
                                     p.number("max_concurrent", 0, minimum=1, kind=int)),
            responses=responses,
            prefill=_parse_prefill(p),
        )
    return out




def _parse_models(s: _Section, providers: Mapping[str, ProviderConfig]) -> dict[str, ModelRoute]:
    if not s.data:
        raise ConfigError("models", "at least one model alias is required")
    out: dict[str, ModelRoute] = {}
    for alias in s.data:
        m = s.section(str(alias))
        m.only("targets", "hedge", "timeout_s", "default_max_tokens", "cache", "stream_stall_ms", "resume")
        raw_targets = m.data.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            raise ConfigError(m.at("targets"), "must be a non-empty list")
        targets = []
        for i, raw in enumerate(raw_targets):
            t = _Section(raw, f"{m.at('targets')}[{i}]", s.env)
            t.only("provider", "model", "price")
            provider = t.string("provider")
            if provider not in providers:
                raise ConfigError(t.at("provider"), f"unknown provider {provider!r} "
                                  f"(configured: {', '.join(providers)})")
            model = t.string("model")
            targets.append(Target(provider=provider, model=model,
                                  price=_parse_price(t.section("price"), providers[provider], model)))
        timeout = m.raw("timeout_s")
        out[str(alias)] = ModelRoute(
            alias=str(alias), targets=tuple(targets), hedge=_parse_hedge(m),
            timeout_s=None if timeout is None else m.number("timeout_s", 0.0, minimum=0.001),
            default_max_tokens=m.number("default_max_tokens", 4096, minimum=1, kind=int),
            cache=_parse_cache(m),
            stream_stall_ms=None if m.raw("stream_stall_ms") is None else
            m.number("stream_stall_ms", 0.0, minimum=1),
            resume_max=_parse_resume(m),
        )
    return out


# Config price keys and the `Price` fields they set (the 1 h write is the long-TTL class).
_PRICE_KEYS = {"input_per_mtok": "input_per_mtok", "output_per_mtok": "output_per_mtok",
               "cache_read_per_mtok": "cache_read_per_mtok", "cache_write_per_mtok": "cache_write_per_mtok",
               "cache_write_1h_per_mtok": "cache_write_long_per_mtok"}


def _parse_price(s: _Section, provider: ProviderConfig, model: str) -> Price:
    """Every configured price wins; the catalog (genai-prices, bundled) fills the others, looked up now so no
    request ever waits for it."""
    from gateway.pricing.catalog import lookup, merge  # imported here: the catalog imports this package's model

    s.only(*_PRICE_KEYS)
    configured = {field: s.number(key, 0.0, minimum=0) for key, field in _PRICE_KEYS.items()
                  if s.raw(key) is not None}
    entry = None if len(configured) == len(_PRICE_KEYS) else lookup(str(provider.kind), provider.base_url, model)
    return merge(configured, entry)


_PREFILL_STYLES = ("off", "continue_final_message", "prefix")


def _parse_prefill(p: _Section) -> str | None:
    raw = p.raw("prefill")
    if raw is None:
        return None
    if raw is True:
        return "continue_final_message"
    if raw is False:
        return "off"
    if raw not in _PREFILL_STYLES:
        raise ConfigError(p.at("prefill"), f"must be true, false, continue_final_message or prefix, got {raw!r}")
    return str(raw)


def _parse_resume(m: _Section) -> int:
    """`resume: on` (one resume per request), `{max: N}`, or off (the default)."""
    raw = m.raw("resume")
    if raw is None or raw is False or raw == "off":
        return 0
    if raw is True or raw == "on":
        return 1
    if not isinstance(raw, dict):
        raise ConfigError(m.at("resume"), f"must be on, off or {{max: N}}, got {raw!r}")
    r = m.section("resume")
    r.only("max")
    return r.number("max", 1, minimum=0, maximum=5, kind=int)


def _parse_cache(m: _Section) -> CacheOptions | None:
    raw = m.data.get("cache")
    if raw is None or raw is False or raw == "off":
        return None
    c = m.section("cache")
    c.only("ttl_s", "max_entries", "max_mb", "shared_across_keys", "always")
    return CacheOptions(ttl_s=c.number("ttl_s", 300.0, minimum=0.001),
                        max_entries=c.number("max_entries", 1000, minimum=1, kind=int),
                        max_bytes=int(c.number("max_mb", 64.0, minimum=0.001) * 1024 * 1024),
                        shared_across_keys=c.boolean("shared_across_keys", False),
                        always=c.boolean("always", False))


_HEDGE_KEYS = ("delay_ms", "max_attempts", "budget_percent", "budget_window_s", "budget_min", "min_delay_ms",
               "max_delay_ms", "min_samples", "fallback_delay_ms", "window_s", "rearm", "budget_usd_per_hour")


def _parse_hedge(m: _Section) -> HedgeConfig:
    raw = m.data.get("hedge")
    if raw is False or raw == "off":
        return HedgeConfig(max_attempts=1)
    h = m.section("hedge")
    h.only(*_HEDGE_KEYS)
    budget = BudgetOptions(percent=h.number("budget_percent", 10.0, minimum=0, maximum=100),
                           window_s=h.number("budget_window_s", 10.0, minimum=0.1),
                           min_per_window=h.number("budget_min", 3, minimum=0, kind=int))
    max_attempts = h.number("max_attempts", 2, minimum=1, maximum=MAX_ATTEMPTS_CAP, kind=int)
    rearm = h.boolean("rearm", True)
    ceiling = None if h.raw("budget_usd_per_hour") is None else h.number("budget_usd_per_hour", 0.0, minimum=0)
    delay = h.raw("delay_ms")
    if isinstance(delay, str) and delay.strip().lower().startswith("p"):
        try:
            quantile = parse_quantile(delay.strip().lower())
        except ValueError as exc:
            raise ConfigError(h.at("delay_ms"), str(exc)) from None
        min_delay = h.number("min_delay_ms", 50.0, minimum=0)
        max_delay = h.number("max_delay_ms", 10_000.0, minimum=0)
        if max_delay < min_delay:
            raise ConfigError(h.at("max_delay_ms"), f"must be >= min_delay_ms ({min_delay:g})")
        adaptive = AdaptiveDelayOptions(
            quantile=quantile, min_delay_ms=min_delay, max_delay_ms=max_delay,
            min_samples=h.number("min_samples", 20, minimum=1, kind=int),
            fallback_ms=h.number("fallback_delay_ms", 1_000.0, minimum=0),
            window_s=h.number("window_s", 60.0, minimum=0.1))
        return HedgeConfig(max_attempts=max_attempts, delay_ms=adaptive.fallback_ms, adaptive=adaptive,
                           budget=budget, rearm=rearm, budget_usd_per_hour=ceiling)
    for key in ("min_delay_ms", "max_delay_ms", "min_samples", "fallback_delay_ms", "window_s"):
        if key in h.data:
            raise ConfigError(h.at(key), "only applies to an adaptive delay_ms such as p95")
    return HedgeConfig(max_attempts=max_attempts, delay_ms=h.number("delay_ms", 400.0, minimum=0),
                       budget=budget, rearm=rearm, budget_usd_per_hour=ceiling)


def _parse_telemetry(s: _Section) -> TelemetryConfig:
    s.only("traces_file", "capture_content", "metrics_key")
    return TelemetryConfig(traces_file=s.string("traces_file", "gateway-traces.jsonl"),
                           capture_content=s.boolean("capture_content", False),
                           metrics_key=s.string("metrics_key", ""))


def _parse_state(s: _Section) -> StateConfig:
    s.only("backend", "url", "key_prefix", "timeout_ms", "share_workers", "share_latency")
    backend = s.string("backend", "memory")
    if backend not in ("memory", "redis"):
        raise ConfigError(s.at("backend"), f"must be memory or redis, got {backend!r}")
    url = s.string("url", "redis://127.0.0.1:6379/0")
    if urlparse(url).scheme not in ("redis", "rediss", "unix"):
        # The URL is not echoed: it may carry a password.
        raise ConfigError(s.at("url"), "must be a redis://, rediss:// or unix:// URL")
    return StateConfig(backend="redis" if backend == "redis" else "memory", url=url,
                       key_prefix=s.string("key_prefix", "gw:"),
                       timeout_ms=s.number("timeout_ms", 100.0, minimum=1, maximum=10_000),
                       share_workers=s.boolean("share_workers", True),
                       share_latency=s.boolean("share_latency", True))


def _parse_responses(s: _Section) -> ResponsesConfig:
    s.only("ttl_s", "max_entries", "max_mb")
    return ResponsesConfig(ttl_s=s.number("ttl_s", 3600.0, minimum=1),
                           max_entries=s.number("max_entries", 10_000, minimum=1, kind=int),
                           max_bytes=int(s.number("max_mb", 256.0, minimum=0.001) * 1024 * 1024))
