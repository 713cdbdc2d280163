"""SimStats and the credential redaction the simulator applies to everything it records."""

from __future__ import annotations

from multidict import CIMultiDict

from gateway.simulator import SimStats, key_fingerprint, redact_headers


def test_fingerprint_is_short_stable_and_one_way() -> None:
    fp = key_fingerprint("sk-secret-value")
    assert fp == key_fingerprint("sk-secret-value")
    assert fp != key_fingerprint("sk-secret-valuf")
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 12
    assert "secret" not in fp


def test_redaction_fingerprints_the_bare_credential_and_keeps_the_rest() -> None:
    headers = CIMultiDict({"Authorization": "Bearer sk-a", "X-Api-Key": "sk-a", "api-key": "sk-b",
                           "X-Custom-Token": "t0k", "Anthropic-Version": "2023-06-01", "Content-Type": "x/y"})
    redacted = redact_headers(headers)
    # Bearer scheme stripped, so both auth styles fingerprint the same key alike.
    assert redacted["authorization"] == redacted["x-api-key"] == key_fingerprint("sk-a")
    assert redacted["api-key"] == key_fingerprint("sk-b")
    assert redacted["x-custom-token"] == key_fingerprint("t0k")
    assert redacted["anthropic-version"] == "2023-06-01"
    assert redacted["content-type"] == "x/y"
    assert not any(secret in repr(redacted) for secret in ("sk-a", "sk-b", "t0k"))


def test_reset_zeroes_counters_but_not_the_gauge() -> None:
    stats = SimStats(received=3, completed=1, disconnected=1, in_flight=1, tokens_sent=9,
                     last_headers={"a": "b"}, last_body={"model": "m"})
    stats.count_error(529)
    stats.count_error(529)
    stats.count_error(500)
    assert stats.errors == 3 and stats.errors_by_status == {529: 2, 500: 1}
    stats.reset()
    assert stats.as_dict() == {"received": 0, "completed": 0, "disconnected": 0, "errors": 0, "in_flight": 1,
                               "tokens_sent": 0, "errors_by_status": {}, "received_by_route": {},
                               "last_headers": {}, "last_body": None}


def test_as_dict_is_json_ready() -> None:
    stats = SimStats()
    stats.count_error(429)
    assert stats.as_dict()["errors_by_status"] == {"429": 1}
