"""What a race hands over: a complete answer, or a committed stream that settles its own attempt when it ends."""

from __future__ import annotations

from types import TracebackType

from gateway.config.model import Target
from gateway.engine.attempt import AttemptRun
from gateway.engine.records import Attempt, Outcome
from gateway.errors import GatewayError, ProviderError
from gateway.wire import Json, SSEEvent


class Completed:
    """A non-streaming winner: the whole response body in the client's format. Its attempt has ended."""

    __slots__ = ("attempt", "attempts_sent", "body")

    def __init__(self, attempt: Attempt, body: Json, attempts_sent: int) -> None:
        self.attempt, self.body, self.attempts_sent = attempt, body, attempts_sent

    @property
    def target(self) -> Target:
        return self.attempt.target


class StreamBroken(GatewayError):
    """A committed stream failed mid-way (the provider's fault). Its attempt is settled as a failure."""

    def __init__(self, cause: ProviderError) -> None:
        super().__init__(502, cause.message, type="api_error")
        self.cause_type = cause.error_type


class StreamingWinner:
    """A committed stream: iterate it for the client's event batches (the head first, up to the first content
    token). Use it as an async context manager: on exit the upstream is closed and the attempt settled, once,
    by how the stream ended (complete: success; broken: `StreamBroken` raised, a provider failure; left by
    the client or cut by the deadline: neutral)."""

    __slots__ = ("_head", "_run", "attempts_sent")

    def __init__(self, run: AttemptRun, head: list[SSEEvent], attempts_sent: int) -> None:
        self._run, self._head, self.attempts_sent = run, head, attempts_sent

    @property
    def target(self) -> Target:
        return self._run.target

    @property
    def ready(self) -> bool:
        """Whether the next batch is already here (the head, events read with it, or the stream's end): see
        `AttemptRun.ready`."""
        return bool(self._head) or self._run.ready

    def __aiter__(self) -> StreamingWinner:
        return self

    async def __anext__(self) -> list[SSEEvent]:
        head = self._head
        if head:
            self._head = []
            return head
        run = self._run
        while True:
            try:
                events = await run.next_batch()
            except ProviderError as exc:
                run.finish(Outcome.WON, exc)
                raise StreamBroken(exc) from None
            if events is None:
                run.finish(Outcome.WON)
                raise StopAsyncIteration
            if events:
                return events

    async def __aenter__(self) -> StreamingWinner:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def broken(self, cause: ProviderError) -> StreamBroken:
        """The stream's events cannot be passed on (e.g. nested deeper than can be written): the provider's fault,
        settled as such; the caller ends the client's stream with the returned error."""
        self._run.finish(Outcome.WON, cause)
        return StreamBroken(cause)

    async def aclose(self) -> None:
        """No-op after a clean end; otherwise drops the upstream connection. Settles the attempt."""
        try:
            await self._run.aclose()
        finally:
            self._run.finish(Outcome.WON)


Winner = Completed | StreamingWinner
