"""`CompositeHooks`: every hook gets every event it handles, once and in order; none can fail a request."""

from __future__ import annotations

import pytest

from gateway.engine import BreakerChanged, CompositeHooks, HedgeSkipped, Hooks, RequestSummary
from gateway.engine.hooks import guarded
from gateway.wire import WireFormat


class Recording(Hooks):
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name, self.seen = name, seen

    def hedge_skipped(self, event: HedgeSkipped) -> None:
        self.seen.append(f"{self.name}:{event.reason}")


class Raising(Hooks):
    def hedge_skipped(self, event: HedgeSkipped) -> None:
        raise RuntimeError("observer bug")

    def breaker_changed(self, event: BreakerChanged) -> None:
        raise RuntimeError("observer bug")


class Counting(CompositeHooks):
    """A subclass that overrides an event and delegates with super(), as test harnesses do."""

    def __init__(self, *hooks: Hooks) -> None:
        super().__init__(*hooks)
        self.finished = 0

    def request_finished(self, summary: RequestSummary) -> None:
        super().request_finished(summary)
        self.finished += 1


def test_nested_composites_deliver_each_event_once_in_order(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    inner = CompositeHooks(Recording("a", seen), Raising(), Recording("b", seen))
    hooks = CompositeHooks(inner, Hooks(), Recording("c", seen), CompositeHooks(Recording("d", seen)))
    hooks.hedge_skipped(HedgeSkipped(1, "x", "budget"))
    assert seen == ["a:budget", "b:budget", "c:budget", "d:budget"]
    assert caplog.text.count("a hook failed") == 1  # the raising hook: logged, the others still called
    hooks.breaker_changed(BreakerChanged("p", "closed", "open"))  # only the raising hook handles it
    assert caplog.text.count("a hook failed") == 2


def test_a_composite_subclass_keeps_its_override_and_its_delegation() -> None:
    seen: list[str] = []
    counting = Counting(Recording("a", seen))
    hooks = guarded(CompositeHooks(counting, Recording("b", seen)))
    summary = RequestSummary(request_id=1, alias="x", door=WireFormat.OPENAI, endpoint="chat", stream=False,
                             started=0.0, latency_s=0.1, status=200, trace_id=1)
    hooks.request_finished(summary)
    hooks.hedge_skipped(HedgeSkipped(1, "x", "budget"))
    assert counting.finished == 1 and seen == ["a:budget", "b:budget"]


def test_guarded_wraps_a_plain_hook_and_keeps_a_composite() -> None:
    composite = CompositeHooks()
    assert guarded(composite) is composite
    wrapped = guarded(Raising())
    assert isinstance(wrapped, CompositeHooks)
    wrapped.hedge_skipped(HedgeSkipped(1, "x", "budget"))  # does not raise
