"""Keeping a provider's key out of what the gateway says about that provider's answers.

Upstream error bodies are quoted in client errors, logs and traces, and some upstreams echo the key they were
sent ("Incorrect API key provided: sk-..."). Two rules, for every text built from upstream bytes:

- redact first, bound second: a bound that cuts through the key would leave a part of it that the exact
  match no longer finds. `redact` still removes a key's cut-off start or end (a text bounded before it was
  redacted, by code that forgot the first rule or by the upstream itself), so one slip does not leak.
- an upstream error `type` is a word from a known list, never free text: it is returned to clients as the
  error type, and it labels metrics, logs and traces. See `gateway.errors.known_error_type`.
"""

from __future__ import annotations

__all__ = ["MAX_ERROR_TEXT", "REDACTED", "bounded", "redact"]

REDACTED = "[redacted]"
# A shorter piece of a key is not treated as a piece of it (every OpenAI key starts "sk-proj-", 8 characters,
# so a match that short would say nothing secret and catch ordinary words).
MIN_FRAGMENT = 6
MAX_ERROR_TEXT = 600  # characters of one attempt's error text, after redaction


def redact(text: str, key: str) -> str:
    """`text` with every occurrence of `key` replaced, and every piece of `key` at least `MIN_FRAGMENT` long
    that is its start or its end (what a cut leaves) replaced too."""
    if not key:
        return text
    if key in text:
        text = text.replace(key, REDACTED)
    if len(key) <= MIN_FRAGMENT:
        return text
    text = _cut_starts(text, key)
    return _cut_ends(text, key)


def _cut_starts(text: str, key: str) -> str:
    """Replace each `key[:n]` (n >= MIN_FRAGMENT) in `text`: a key whose end was cut off."""
    head = key[:MIN_FRAGMENT]
    at = text.find(head)
    while at >= 0:
        end = at + MIN_FRAGMENT
        while end < len(text) and end - at < len(key) and text[end] == key[end - at]:
            end += 1
        text = text[:at] + REDACTED + text[end:]
        at = text.find(head, at + len(REDACTED))
    return text


def _cut_ends(text: str, key: str) -> str:
    """Replace each `key[-n:]` (n >= MIN_FRAGMENT) in `text`: a key whose start was cut off."""
    tail = key[-MIN_FRAGMENT:]
    at = text.find(tail)
    while at >= 0:
        start = at
        offset = len(key) - MIN_FRAGMENT  # index in `key` of text[start]
        while start > 0 and offset > 0 and text[start - 1] == key[offset - 1]:
            start -= 1
            offset -= 1
        end = at + MIN_FRAGMENT
        text = text[:start] + REDACTED + text[end:]
        at = text.find(tail, start + len(REDACTED))
    return text


def bounded(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """`text` cut to `limit` characters (marked as cut). Only ever on text that is already redacted."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
