"""The response cache: which requests may be cached, the canonical key, ttl and LRU bounds."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.clock import FakeClock
from gateway.policies.cache import CachedAnswer, CacheOptions, ResponseCache, cache_key, is_cacheable

BODY: dict[str, Any] = {"model": "chat", "temperature": 0, "max_tokens": 50,
                        "messages": [{"role": "user", "content": "hello"}]}
OPTS = CacheOptions()


def answer(size: int = 10, provider: str = "p") -> CachedAnswer:
    return CachedAnswer(body=b"x" * size, provider=provider, model="m")


def key(body: dict[str, Any] = BODY, *, door: str = "openai", alias: str = "chat", gateway_key: str | None = "gk-1",
        options: CacheOptions = OPTS) -> str:
    return cache_key(door, alias, body, gateway_key, options)


# --- is_cacheable ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "always", "expected"), [
    ({"temperature": 0}, False, True),
    ({"temperature": 0.0}, False, True),
    ({}, False, False),  # both APIs sample by default
    ({"temperature": 0.7}, False, False),
    ({"temperature": None}, False, False),
    ({"temperature": False}, False, False),  # not a number
    ({"temperature": "0"}, False, False),
    ({}, True, True),
    ({"temperature": 1.0}, True, True),
    ({"temperature": 0, "n": 1}, False, True),
    ({"temperature": 0, "n": None}, False, True),
    ({"temperature": 0, "n": 2}, False, False),
    ({"temperature": 0, "n": 3}, True, False),  # never, even when the alias says always
    ({"temperature": 0, "n": "2"}, False, False),
    ({"temperature": 0, "store": True}, False, False),
    ({"temperature": 0, "store": True}, True, False),
    ({"temperature": 0, "store": False}, False, True),
    ({"temperature": 0, "store": None}, False, True),
    ({"temperature": 0, "stream": True}, False, True),
    ({"temperature": 0, "tools": [{"type": "function", "function": {"name": "f"}}]}, False, True),
])
def test_is_cacheable(extra: dict[str, Any], always: bool, expected: bool) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra}
    assert is_cacheable(body, CacheOptions(always=always)) is expected


def test_is_cacheable_anthropic_body() -> None:
    body = {"model": "chat", "max_tokens": 100, "system": "be brief", "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert is_cacheable(body, OPTS) is True
    assert is_cacheable({**body, "temperature": 1}, OPTS) is False


# --- cache_key ------------------------------------------------------------------------------------

def test_key_is_a_sha256_digest_without_the_gateway_key() -> None:
    k = key(gateway_key="sk-secret-gateway-key")
    assert len(k) == 64 and all(c in "0123456789abcdef" for c in k)
    assert "sk-secret" not in k


def test_key_ignores_field_order_and_whitespace() -> None:
    raw_a = b'{"model":"chat","temperature":0,"messages":[{"role":"user","content":"hello"}],"max_tokens":50}'
    raw_b = (b'{ "max_tokens" : 50,\n  "messages": [ {"content": "hello", "role": "user"} ],\n'
             b'  "temperature": 0, "model": "chat" }')
    assert key(orjson.loads(raw_a)) == key(orjson.loads(raw_b)) == key(BODY)


def test_key_ignores_delivery_and_caller_fields() -> None:
    streamed = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    tagged = {**BODY, "user": "alice", "metadata": {"user_id": "u-1"}}
    assert key(streamed) == key(tagged) == key({**BODY, "stream": False}) == key(BODY)


@pytest.mark.parametrize("change", [
    {"model": "other"},
    {"temperature": 0.5},
    {"max_tokens": 51},
    {"messages": [{"role": "user", "content": "hello!"}]},
    {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hello"}]},
    {"tools": [{"type": "function", "function": {"name": "f"}}]},
])
def test_key_changes_with_anything_that_changes_the_answer(change: dict[str, Any]) -> None:
    assert key({**BODY, **change}) != key(BODY)


def test_key_differs_by_door_and_alias() -> None:
    assert key(door="anthropic") != key(door="openai")
    assert key(alias="chat-b") != key(alias="chat")


def test_key_differs_by_gateway_key_unless_shared() -> None:
    assert key(gateway_key="gk-1") != key(gateway_key="gk-2")
    assert key(gateway_key="gk-1") != key(gateway_key=None)
    shared = CacheOptions(shared_across_keys=True)
    assert key(gateway_key="gk-1", options=shared) == key(gateway_key="gk-2", options=shared)
    assert key(gateway_key="gk-1", options=shared) == key(gateway_key=None, options=shared)


def test_key_fields_cannot_run_into_each_other() -> None:
    # Naive concatenation would make ("ab", "c") and ("a", "bc") collide.
    assert key(door="ab", alias="c") != key(door="a", alias="bc")


def test_key_does_not_mutate_the_body() -> None:
    body = {**BODY, "stream": True}
    key(body)
    assert body["stream"] is True


# --- options --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"ttl_s": 0}, {"ttl_s": float("inf")}, {"max_entries": 0}, {"max_bytes": 0}])
def test_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CacheOptions(**kwargs)


# --- ResponseCache --------------------------------------------------------------------------------

def test_answer_size_counts_body_and_headers() -> None:
    assert CachedAnswer(b"abcd", "p", "m", headers=(("x-a", "12"),)).size == 4 + 3 + 2


def test_get_put_and_stats() -> None:
    cache = ResponseCache(OPTS, clock=FakeClock())
    assert cache.get("k") is None
    stored = answer()
    cache.put("k", stored)
    assert cache.get("k") is stored
    assert len(cache) == 1
    assert (cache.hits, cache.misses, cache.evictions) == (1, 1, 0)


def test_ttl_expiry() -> None:
    clock = FakeClock()
    cache = ResponseCache(CacheOptions(ttl_s=10), clock=clock)
    cache.put("k", answer())
    clock.advance(9.999)
    assert cache.get("k") is not None
    clock.advance(0.001)
    assert cache.get("k") is None
    assert len(cache) == 0
    assert cache.evictions == 0  # expiring is not evicting


def test_put_again_restarts_the_ttl() -> None:
    clock = FakeClock()
    cache = ResponseCache(CacheOptions(ttl_s=10), clock=clock)
    cache.put("k", answer(provider="first"))
    clock.advance(8)
    cache.put("k", answer(provider="second"))
    clock.advance(8)
    got = cache.get("k")
    assert got is not None and got.provider == "second"


def test_lru_eviction_by_entries() -> None:
    cache = ResponseCache(CacheOptions(max_entries=3), clock=FakeClock())
    for name in "abc":
        cache.put(name, answer())
    assert cache.get("a") is not None  # a is now the most recently used: b is the LRU
    cache.put("d", answer())
    assert len(cache) == 3
    assert cache.get("b") is None
    assert all(cache.get(name) is not None for name in "acd")
    assert cache.evictions == 1


def test_replacing_an_entry_evicts_nothing() -> None:
    cache = ResponseCache(CacheOptions(max_entries=2), clock=FakeClock())
    cache.put("a", answer())
    cache.put("b", answer())
    cache.put("a", answer(provider="again"))
    assert len(cache) == 2 and cache.evictions == 0


def test_expired_entries_make_room_before_live_ones_are_evicted() -> None:
    clock = FakeClock()
    cache = ResponseCache(CacheOptions(max_entries=2, ttl_s=10), clock=clock)
    cache.put("old", answer())
    clock.advance(5)
    cache.put("live", answer())
    clock.advance(6)  # old has expired, live has not
    cache.put("new", answer())
    assert cache.get("live") is not None and cache.get("new") is not None
    assert cache.evictions == 0


def test_lru_eviction_by_bytes() -> None:
    cache = ResponseCache(CacheOptions(max_entries=100, max_bytes=100), clock=FakeClock())
    for name in "abcd":
        cache.put(name, answer(25))
    assert cache.size_bytes == 100
    assert cache.get("a") is not None  # b is the LRU
    cache.put("e", answer(40))  # needs 40 bytes: b and c go
    assert cache.get("b") is None and cache.get("c") is None
    assert all(cache.get(name) is not None for name in "ade")
    assert cache.size_bytes == 90
    assert cache.evictions == 2


def test_both_bounds_hold_together() -> None:
    cache = ResponseCache(CacheOptions(max_entries=5, max_bytes=1000), clock=FakeClock())
    for i in range(50):
        cache.put(str(i), answer(1 + (i * 37) % 400))
        assert len(cache) <= 5
        assert cache.size_bytes <= 1000
    assert cache.get("49") is not None  # the newest always fits


def test_oversized_answer_is_ignored() -> None:
    cache = ResponseCache(CacheOptions(max_bytes=100), clock=FakeClock())
    cache.put("small", answer(60))
    cache.put("huge", answer(101))
    assert cache.get("huge") is None
    assert cache.get("small") is not None  # nothing was flushed to make room for it
    assert cache.evictions == 0
    cache.put("exact", answer(100))  # exactly max_bytes fits, evicting the rest
    assert cache.get("exact") is not None and cache.get("small") is None
