"""The `state` section: memory by default, redis with a URL; errors name the field and never echo a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, StateConfig, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def with_state(state: object) -> dict[str, object]:
    return {"providers": {"a": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}},
            "models": {"chat": {"targets": [{"provider": "a", "model": "m"}]}},
            "state": state}


def error_of(state: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(with_state(state), {})
    return str(info.value)


def test_memory_is_the_default() -> None:
    assert parse_config(with_state(None), {}).state == StateConfig(backend="memory")


def test_the_shipped_configs() -> None:
    assert load_config(ROOT / "config" / "gateway.example.yaml", env={}).state == StateConfig()
    scale_out = load_config(ROOT / "config" / "scale-out.yaml", env={"REDIS_URL": "redis://redis:6379/0"}).state
    assert scale_out == StateConfig(backend="redis", url="redis://redis:6379/0")


def test_redis_with_every_key_and_the_url_from_the_environment() -> None:
    state = parse_config(with_state({"backend": "redis", "url": "${REDIS_URL}", "key_prefix": "prod:",
                                     "timeout_ms": 50}), {"REDIS_URL": "redis://:pw@10.0.0.5:6379/2"}).state
    assert state == StateConfig(backend="redis", url="redis://:pw@10.0.0.5:6379/2", key_prefix="prod:",
                                timeout_ms=50)
    assert "pw" not in repr(state)


def test_workers_share_their_state_unless_told_not_to() -> None:
    assert StateConfig().share_workers
    assert not parse_config(with_state({"share_workers": False}), {}).state.share_workers


def test_latency_windows_are_shared_unless_told_not_to() -> None:
    assert StateConfig().share_latency
    state = parse_config(with_state({"backend": "redis", "share_latency": False}), {}).state
    assert state.backend == "redis" and not state.share_latency


@pytest.mark.parametrize(("state", "expected"), [
    ({"backend": "memcached"}, "state.backend: must be memory or redis, got 'memcached'"),
    ({"backend": "redis", "urll": "redis://x"}, "state.urll: unknown key (expected one of: backend, url, "
                                                "key_prefix, timeout_ms, share_workers, share_latency)"),
    ({"share_latency": "yes"}, "state.share_latency: must be true or false, got 'yes'"),
    ({"backend": "redis", "timeout_ms": 0}, "state.timeout_ms: must be >= 1, got 0"),
    ({"backend": "redis", "url": "http://:secret@host"}, "state.url: must be a redis://, rediss:// or unix:// URL"),
    ("redis", "state: must be a mapping, got str"),
])
def test_errors_name_the_field(state: object, expected: str) -> None:
    message = error_of(state)
    assert message == expected and "secret" not in message
