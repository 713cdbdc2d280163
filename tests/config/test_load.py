from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.wire import WireFormat

ROOT = Path(__file__).resolve().parents[2]


def minimal(**models: object) -> dict[str, object]:
    return {
        "providers": {"a": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"},
                      "b": {"kind": "anthropic", "base_url": "http://127.0.0.1:2"}},
        "models": models or {"chat": {"targets": [{"provider": "a", "model": "m1"},
                                                  {"provider": "b", "model": "m2"}]}},
    }


def error_of(data: object, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return str(info.value)


def test_example_and_demo_configs_parse() -> None:
    example = load_config(ROOT / "config" / "gateway.example.yaml", env={})
    assert set(example.models) == {"chat", "chat-adaptive", "chat-race", "chat-failover"}
    assert example.models["chat-adaptive"].hedge.adaptive is not None
    assert example.models["chat-adaptive"].hedge.adaptive.quantile == pytest.approx(0.95)
    assert example.models["chat-race"].hedge.delay_ms == 0
    assert example.models["chat-failover"].hedge.max_attempts == 1
    demo = load_config(ROOT / "config" / "demo.yaml", env={})
    assert demo.providers["sim-openai"].base_url == "http://127.0.0.1:9101/v1"


def test_defaults() -> None:
    config = parse_config(minimal(), {})
    assert config.server.port == 8080 and config.server.api_keys == ()
    route = config.models["chat"]
    assert route.hedge.max_attempts == 2 and route.hedge.delay_ms == 400
    assert route.hedge.budget.percent == 10
    assert config.providers["b"].kind is WireFormat.ANTHROPIC
    assert config.deadline_s(route) == 60.0


def test_env_substitution_and_key_not_in_repr() -> None:
    data = minimal()
    data["providers"]["a"]["api_key"] = "${KEY_A}"  # type: ignore[index]
    data["server"] = {"api_keys": ["${GW_KEY}", "literal"]}
    config = parse_config(data, {"KEY_A": "sk-secret-a", "GW_KEY": "gw-secret"})
    assert config.providers["a"].api_key == "sk-secret-a"
    assert config.server.api_keys == ("gw-secret", "literal")
    assert "sk-secret-a" not in repr(config) and "gw-secret" not in repr(config)


def test_env_default_and_missing_variable_names_the_field() -> None:
    data = minimal()
    data["providers"]["a"]["api_key"] = "${NOPE}"  # type: ignore[index]
    assert error_of(data) == "providers.a.api_key: environment variable NOPE is not set"
    data["providers"]["a"]["api_key"] = "${NOPE:-fallback}"  # type: ignore[index]
    assert parse_config(data, {}).providers["a"].api_key == "fallback"


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["models"]["chat"]["targets"][1].update(provider="zzz"),
     "models.chat.targets[1].provider: unknown provider 'zzz'"),
    (lambda d: d["providers"]["a"].update(kind="gemini"), "providers.a.kind: must be openai or anthropic"),
    (lambda d: d["providers"]["a"].update(base_url="ftp://x"), "providers.a.base_url: must be an http(s) URL"),
    (lambda d: d["providers"]["a"].update(timeout_s="soon"), "providers.a.timeout_s: must be a number"),
    (lambda d: d["providers"]["a"].update(breaker={"fail_max": 0}), "providers.a.breaker.fail_max: must be >= 1"),
    (lambda d: d["providers"]["a"].update(breaker={"fail_mx": 3}), "providers.a.breaker.fail_mx: unknown key"),
    (lambda d: d["models"]["chat"].update(hedge={"dealy_ms": 3}), "models.chat.hedge.dealy_ms: unknown key"),
    (lambda d: d["models"]["chat"].update(hedge={"max_attempts": 9}), "models.chat.hedge.max_attempts: must be <= 5"),
    (lambda d: d["models"]["chat"].update(hedge={"delay_ms": "p0"}), "models.chat.hedge.delay_ms:"),
    (lambda d: d["models"]["chat"].update(hedge={"delay_ms": -1}), "models.chat.hedge.delay_ms: must be >= 0"),
    (lambda d: d["models"]["chat"].update(hedge={"delay_ms": 5, "min_samples": 3}),
     "models.chat.hedge.min_samples: only applies to an adaptive delay_ms"),
    (lambda d: d["models"]["chat"].update(hedge={"delay_ms": "p90", "min_delay_ms": 500, "max_delay_ms": 100}),
     "models.chat.hedge.max_delay_ms: must be >= min_delay_ms"),
    (lambda d: d["models"]["chat"].update(targets=[]), "models.chat.targets: must be a non-empty list"),
    (lambda d: d["models"]["chat"]["targets"][0].update(price={"input_per_mtok": -1}),
     "models.chat.targets[0].price.input_per_mtok: must be >= 0"),
    (lambda d: d.update(server={"port": True}), "server.port: must be a number"),
    (lambda d: d.update(server={"max_body_mb": 0}), "server.max_body_mb: must be >="),
    (lambda d: d.update(server={"header_timeout_s": 0}), "server.header_timeout_s: must be >="),
    (lambda d: d.update(server={"body_timeout_s": "slow"}), "server.body_timeout_s: must be a number"),
    (lambda d: d.update(server={"idle_timeout_s": -1}), "server.idle_timeout_s: must be >="),
    (lambda d: d.update(extra=1), "extra: unknown key"),
    (lambda d: d["models"]["chat"].update(hedge={"budget_usd_per_hour": -1}),
     "models.chat.hedge.budget_usd_per_hour: must be >= 0"),
    (lambda d: d["models"]["chat"].update(hedge={"rearm": "yes"}), "models.chat.hedge.rearm: must be"),
    (lambda d: d["providers"]["a"].update(pool_timeout_s=0), "providers.a.pool_timeout_s: must be >="),
    (lambda d: d.update(providers={}), "providers: at least one provider is required"),
])
def test_errors_name_the_field(mutate: object, expected: str) -> None:
    data = minimal()
    mutate(data)  # type: ignore[operator]
    assert error_of(data).startswith(expected)


def test_hedge_off_and_adaptive() -> None:
    data = minimal()
    data["models"]["chat"]["hedge"] = "off"  # type: ignore[index]
    assert not parse_config(data, {}).models["chat"].hedge.enabled
    data["models"]["chat"]["hedge"] = {"delay_ms": "p99.9", "fallback_delay_ms": 250}  # type: ignore[index]
    hedge = parse_config(data, {}).models["chat"].hedge
    assert hedge.adaptive is not None and hedge.adaptive.quantile == pytest.approx(0.999)
    assert hedge.delay_ms == 250


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(scalar)
