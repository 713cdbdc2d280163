"""Per-request auth: the refreshing credential cache, and SigV4 signing checked by an independent verifier."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from multidict import CIMultiDict

from gateway.config.clouds import BedrockOptions
from gateway.errors import FailureKind, ProviderError
from gateway.providers.auth import BearerAuth, Refreshing
from gateway.providers.bedrock import SigV4, aws_credentials
from gateway.simulator import sigv4
from tests.cloud_env import AWS_KEY_ID, AWS_SECRET, isolate

URL = "http://127.0.0.1:9999/model/anthropic.claude-x-v1:0/invoke-with-response-stream"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A blocking token source: each fetch returns the next token, valid `ttl` seconds from the clock."""

    def __init__(self, clock: Clock, ttl: float = 3600.0) -> None:
        self.clock, self.ttl = clock, ttl
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def __call__(self) -> tuple[str, float]:
        self.gate.wait(5)
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return f"token-{self.calls}", self.clock.now + self.ttl


async def test_a_token_is_cached_until_the_margin_then_refreshed_in_the_background() -> None:
    clock = Clock()
    source = Source(clock)
    cache = Refreshing(source, what="test token", margin_s=300, urgent_s=30, clock=clock)
    assert await cache.get() == "token-1"
    clock.now += 3000  # 600 s left: still fresh
    assert await cache.get() == "token-1" and source.calls == 1
    clock.now += 400  # 200 s left: inside the margin; served at once while a refresh runs
    source.gate.clear()
    assert await cache.get() == "token-1"
    source.gate.set()
    await asyncio.sleep(0)
    for _ in range(100):
        if cache.refreshes == 2:
            break
        await asyncio.sleep(0.01)
    assert await cache.get() == "token-2" and source.calls == 2


async def test_concurrent_callers_share_one_refresh_and_a_cancelled_one_leaves_it_running() -> None:
    clock = Clock()
    source = Source(clock)
    source.gate.clear()
    cache = Refreshing(source, what="test token", clock=clock)
    waiters = [asyncio.create_task(cache.get()) for _ in range(5)]
    await asyncio.sleep(0.01)
    waiters[0].cancel()
    source.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == ["token-1"] * 4 and source.calls == 1


async def test_an_expired_token_makes_callers_wait_and_a_failure_names_only_the_error_type() -> None:
    clock = Clock()
    source = Source(clock, ttl=60)
    cache = Refreshing(source, what="Entra ID token", clock=clock)
    await cache.get()
    clock.now += 61
    source.fail = RuntimeError("tenant says: client_secret=hunter2 is wrong")
    with pytest.raises(ProviderError) as caught:
        await cache.get()
    assert caught.value.kind is FailureKind.FAULT and caught.value.error_type == "auth_unavailable"
    assert "hunter2" not in caught.value.message and "RuntimeError" in caught.value.message
    source.fail = None
    assert await cache.get() == "token-3"  # an urgent caller retries at once, without the backoff


async def test_bearer_auth_header_and_secret_for_redaction() -> None:
    clock = Clock()
    auth = BearerAuth(Refreshing(Source(clock), what="t", clock=clock))
    assert auth.secrets() == ()
    assert await auth.headers("POST", URL, {}, b"{}") == {"authorization": "Bearer token-1"}
    assert auth.secrets() == ("token-1",)
    await auth.aclose()


def verify(headers: dict[str, str], body: bytes, secret: str = AWS_SECRET, key_id: str | None = AWS_KEY_ID) -> None:
    sent = CIMultiDict({"Host": "127.0.0.1:9999", **headers})
    path = URL.split("127.0.0.1:9999", 1)[1]
    sigv4.verify("POST", path, sent, body, access_key=key_id, secret_key=secret, service="bedrock")


@pytest.mark.parametrize("model", ["anthropic.claude-x-v1:0", "arn:aws:bedrock:us-east-1:1:inference-profile/us.x"])
async def test_sigv4_signature_verifies_independently_and_covers_the_body(model: str) -> None:
    signer = SigV4(lambda: Credentials(AWS_KEY_ID, AWS_SECRET), "us-east-1")
    from urllib.parse import quote
    url = f"http://127.0.0.1:9999/model/{quote(model, safe=':@')}/invoke-with-response-stream"
    base = {"content-type": "application/json", "accept": "application/vnd.amazon.eventstream"}
    body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":5}'
    signed = {**base, **await signer.headers("POST", url, base, body)}
    assert signed["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in signed["authorization"]
    path = url.split("127.0.0.1:9999", 1)[1]
    sent = CIMultiDict({"Host": "127.0.0.1:9999", **signed})
    sigv4.verify("POST", path, sent, body, access_key=AWS_KEY_ID, secret_key=AWS_SECRET, service="bedrock")
    with pytest.raises(sigv4.Refused, match="does not match"):  # one byte of the body changed
        sigv4.verify("POST", path, sent, body.replace(b"5", b"6"), access_key=AWS_KEY_ID, secret_key=AWS_SECRET,
                     service="bedrock")
    with pytest.raises(sigv4.Refused, match="does not match"):
        sigv4.verify("POST", path, sent, body, access_key=AWS_KEY_ID, secret_key="other", service="bedrock")
    with pytest.raises(sigv4.Refused, match="Signature expired"):
        sigv4.verify("POST", path, sent, body, access_key=AWS_KEY_ID, secret_key=AWS_SECRET, service="bedrock",
                     now=datetime.now(UTC) + timedelta(minutes=6))
    await signer.aclose()


async def test_temporary_credentials_send_their_token_and_redact_it() -> None:
    signer = SigV4(lambda: Credentials(AWS_KEY_ID, AWS_SECRET, "session-token-1"), "eu-west-1")
    base = {"content-type": "application/json"}
    signed = await signer.headers("POST", URL, base, b"{}")
    assert signed["x-amz-security-token"] == "session-token-1"
    assert "x-amz-security-token" in signed["authorization"]  # and the signature covers it
    assert signer.secrets() == ("session-token-1",)


async def test_the_default_chain_reads_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    signer = SigV4(aws_credentials(BedrockOptions(region="us-east-1")), "us-east-1")
    base = {"content-type": "application/json"}
    body = b"{}"
    verify({**base, **await signer.headers("POST", URL, base, body)}, body, secret="secret-from-env",
           key_id="AKIDFROMENV")


async def test_no_credentials_anywhere_is_a_fault_not_a_hang(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate(monkeypatch, tmp_path)
    signer = SigV4(aws_credentials(BedrockOptions(region="us-east-1")), "us-east-1")
    with pytest.raises(ProviderError, match="cannot get AWS credentials"):
        await asyncio.wait_for(signer.headers("POST", URL, {}, b"{}"), 10)


async def test_refreshable_credentials_are_refrozen_so_botocores_refresh_is_seen() -> None:
    calls: list[int] = []

    def refresh() -> dict[str, Any]:
        calls.append(1)
        # Expires in 5 minutes: inside botocore's mandatory window, so every freeze refreshes.
        expiry = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        return {"access_key": f"AKID{len(calls)}", "secret_key": "s", "token": f"t{len(calls)}",
                "expiry_time": expiry}

    source = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    signer = SigV4(lambda: source, "us-east-1")
    first = await signer.headers("POST", URL, {}, b"{}")
    frozen, expires = signer._freeze()
    assert expires != float("inf")  # refreshable: re-frozen every couple of minutes, not kept forever
    assert frozen.access_key != "AKID1" and "Credential=AKID" in first["authorization"]
