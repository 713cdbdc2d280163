"""`gateway.wire`: the fast event constructor and the bound on forwarding an event's raw text."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.wire import WRITABLE_NESTING, SSEEvent, forwardable, nested_within_writable, read_event


def test_read_event_is_the_dataclass_built_fast() -> None:
    ev = read_event({"a": 1}, "x", b'{"a":1}')
    assert ev == SSEEvent({"a": 1}, "x") and ev.raw == b'{"a":1}'
    assert read_event({}, None, None) == SSEEvent({})


def nested(depth: int, padding: int = 0) -> bytes:
    return b"[" * (depth - 1) + b'{"p": "' + b" " * padding + b'"}' + b"]" * (depth - 1)


@given(depth=st.integers(1, 400), padding=st.integers(0, 600))
def test_nested_within_writable_is_exactly_what_orjson_writes_back(depth: int, padding: int) -> None:
    text = nested(depth, padding)
    try:
        orjson.dumps(orjson.loads(text))
        writable = True
    except orjson.JSONEncodeError:
        writable = False
    if nested_within_writable(text):
        assert writable  # never forwards what the slow path would refuse
    assert nested_within_writable(text) == (depth <= WRITABLE_NESTING)


def test_brackets_inside_strings_only_make_the_bound_stricter() -> None:
    text = b'{"t": "' + b"[" * 600 + b'"}'
    assert not nested_within_writable(text)  # refused, though writable: it is then written again, no harm
    assert nested_within_writable(b'{"t": "' + b"x" * 600 + b'"}')


def test_forwardable_text_is_on_one_line() -> None:
    assert forwardable(b'{"a": 1}')
    assert not forwardable(b'{"a":\n1}') and not forwardable(b'{"a":\r1}')
