"""`redact` and `bounded`: a key, or any start or end of it a cut left, never survives; other text does."""

from __future__ import annotations

from gateway.errors import known_error_type
from gateway.providers.redaction import MIN_FRAGMENT, REDACTED, bounded, redact

KEY = "sk-test-Qw3Er5Ty7Ui9Op1As2Df4Gh6"


def leaks(text: str, size: int = MIN_FRAGMENT) -> list[str]:
    return [KEY[i:i + size] for i in range(len(KEY) - size + 1) if KEY[i:i + size] in text]


def test_whole_keys_anywhere() -> None:
    text = f"{KEY} and {KEY}{KEY}, again: {KEY}"
    assert redact(text, KEY) == f"{REDACTED} and {REDACTED}{REDACTED}, again: {REDACTED}"


def test_a_cut_at_any_point_of_the_key_leaves_nothing_of_it() -> None:
    for keep in range(len(KEY) + 1):
        start_cut = "Incorrect API key provided: " + KEY[:keep]  # a bound cut the end off
        end_cut = KEY[len(KEY) - keep:] + " was rejected"  # a window cut the start off
        inside = f"invalid response ({KEY[:keep]})"  # a bound, then more text around it
        for text in (start_cut, end_cut, inside):
            assert leaks(redact(text, KEY)) == [], (keep, redact(text, KEY))


def test_other_text_is_untouched() -> None:
    text = "HTTP 401: Incorrect API key provided: sk-****************abcd (see https://example.com/keys)"
    assert redact(text, KEY) == text
    assert redact(text, "") == text
    assert redact("abc", "abc") == REDACTED  # a short key: only whole matches


def test_bounded_cuts_only_long_text() -> None:
    assert bounded("x" * 10, 10) == "x" * 10
    assert bounded("x" * 11, 10) == "x" * 9 + "…" and len(bounded("y" * 5000)) == 600


def test_redact_then_bound_never_leaks() -> None:
    for offset in range(len(KEY) + 2):
        text = "e" * offset + (KEY + " ") * 30
        assert leaks(bounded(redact(text, KEY), 200)) == []


def test_known_error_types() -> None:
    assert known_error_type("rate_limit_error") == "rate_limit_error"
    assert known_error_type("insufficient_quota") == "insufficient_quota"
    for value in ("invalid key " + KEY, KEY, "", None, 42, ["api_error"], "API_ERROR"):
        assert known_error_type(value) == ""
