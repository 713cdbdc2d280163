"""`AttemptRun` on its own, in virtual time (looptime): how a stream's end and a malformed event fail an attempt.

Regressions of cdb4ce9: a translator's closing events (built from provider data) that cannot be built must fail
the attempt as a provider fault, like a malformed event, never escape as another exception; and the log line of
a malformed event is redacted before it is bounded, so a key the bound cuts in two is still cut out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from gateway.config.model import ModelRoute, Target
from gateway.engine.attempt import AttemptRun
from gateway.engine.hooks import Hooks
from gateway.engine.records import Launch, RequestRecord
from gateway.errors import FailureKind, ProviderError
from gateway.formats.codecs import codec_for
from gateway.policies.breaker import BreakerOptions, CircuitBreaker
from gateway.providers import UpstreamRequest
from gateway.providers.redaction import REDACTED, redact
from gateway.translate.passthrough import PASSTHROUGH
from gateway.wire import SSEEvent, WireFormat
from tests.engine.fakes import FakeProvider, Plan

pytestmark = pytest.mark.looptime

TARGET = Target("a", "model-a")
BODY: dict[str, Any] = {"model": "model-a", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
KEY = "sk-live-Zq8xW2vN5mK7pL3rT9yB4cF6"  # the provider's key: no part of it may reach a log line
LOG_BOUND = 300  # characters of a malformed event the log line shows


class ClosingFails:
    """A translator whose closing events cannot be built from what the provider sent (as when a provider's
    usage is not a number and the translator adds it up): each event passes through, `finish` raises."""

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        return PASSTHROUGH.feed(ev)

    def finish(self) -> list[SSEEvent]:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")


class Scripted(FakeProvider):
    """Streams fixed batches, and redacts its key as an HTTP provider does."""

    def __init__(self, batches: list[list[SSEEvent]]) -> None:
        super().__init__("a")
        self.batches = batches

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[list[SSEEvent], None]:
        return self._batches()

    async def _batches(self) -> AsyncGenerator[list[SSEEvent], None]:
        for batch in self.batches:
            yield batch

    def redact(self, text: str) -> str:
        return redact(text, KEY)


def attempt(provider: FakeProvider, translator: Any = PASSTHROUGH) -> AttemptRun:
    loop = asyncio.get_running_loop()
    route = ModelRoute(alias="chat", targets=(TARGET,))
    record = RequestRecord(request_id=1, door=WireFormat.OPENAI, started=loop.time(), trace_id=1, route=route,
                           alias="chat", stream=True)
    permit = CircuitBreaker("a", BreakerOptions()).try_acquire()
    assert permit is not None
    return AttemptRun(record, 0, TARGET, Launch.PRIMARY, provider=provider, upstream=UpstreamRequest(BODY),
                      inspect=codec_for(WireFormat.OPENAI).inspect, translator=translator, clock=loop.time,
                      hooks=Hooks(), permit=permit, breaker_state="closed", input_estimate=1, bulkhead=None,
                      holds_slot=False)


def assert_malformed_end(error: object) -> None:
    assert isinstance(error, ProviderError), error
    assert error.kind is FailureKind.FAULT  # a provider fault: the race falls through to the next target
    assert error.error_type == "bad_response"
    assert error.message == "a: malformed end of stream (TypeError)"


async def test_closing_events_that_cannot_be_built_before_the_first_token_are_a_bad_response(
        caplog: pytest.LogCaptureFixture) -> None:
    run = attempt(FakeProvider("a", Plan(tokens=0)), ClosingFails())  # a complete answer without content
    with caplog.at_level(logging.WARNING):
        result = await run.run(stream=True, timeout_s=10, aggregator=codec_for(WireFormat.OPENAI).aggregator)
    assert_malformed_end(result)
    # The provider's fault, said as such: not an internal error logged with its traceback.
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_closing_events_that_cannot_be_built_after_the_first_token_end_the_stream_with_a_provider_error(
        caplog: pytest.LogCaptureFixture) -> None:
    run = attempt(FakeProvider("a", Plan(tokens=3)), ClosingFails())
    head = await run.run(stream=True, timeout_s=10, aggregator=codec_for(WireFormat.OPENAI).aggregator)
    assert isinstance(head, list) and run.first_token_s is not None  # committed: the client has a token
    batches: list[list[SSEEvent]] = []
    with caplog.at_level(logging.WARNING), pytest.raises(ProviderError) as info:
        async for batch in run.rest():  # what a committed stream reads: any other exception escaped here
            batches.append(batch)
    assert_malformed_end(info.value)
    assert len(batches) == 3  # every event before the end still went through
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("key_chars_inside", range(1, len(KEY)))
async def test_a_key_cut_by_the_bound_of_the_malformed_event_log_line_is_still_redacted(
        caplog: pytest.LogCaptureFixture, key_chars_inside: int) -> None:
    # The event's repr is "{'pad': 'xxx…<KEY>', 'choices': 'x'}": the key straddles the log line's bound, with
    # `key_chars_inside` of its characters before it. `choices` of the wrong type makes the event malformed.
    opening = "{'pad': '"
    pad = "x" * (LOG_BOUND - len(opening) - key_chars_inside)
    data = {"pad": pad + KEY, "choices": "x"}
    assert repr(data)[:LOG_BOUND] == opening + pad + KEY[:key_chars_inside]
    run = attempt(Scripted([[SSEEvent(data)]]))
    with caplog.at_level(logging.WARNING, logger="gateway.engine"):
        result = await run.run(stream=True, timeout_s=10, aggregator=codec_for(WireFormat.OPENAI).aggregator)
    assert isinstance(result, ProviderError) and result.error_type == "bad_response"
    [line] = [r.getMessage() for r in caplog.records if "malformed event" in r.getMessage()]
    shown = line.split("malformed event ", 1)[1]
    assert shown.startswith(opening + pad) and len(shown) <= LOG_BOUND
    after_pad = shown[len(opening + pad):]
    # What follows the padding is the redaction marker and the rest of the event (cut by the bound wherever it
    # falls), never a piece of the key.
    assert after_pad == (REDACTED + "', 'choices': 'x'}")[:len(after_pad)], after_pad
