"""Scripted providers for engine tests: no network, time from the (virtual) event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from gateway.errors import ProviderError
from gateway.providers import UpstreamRequest
from gateway.wire import Json, SSEEvent, WireFormat


@dataclass
class Plan:
    """What one call to the provider does."""

    ttft_s: float = 0.1  # before the first content token
    tokens: int = 3
    per_token_s: float = 0.0
    error: ProviderError | None = None  # raised after `ttft_s` instead of answering
    error_after_tokens: int | None = None  # raise `error` mid-stream after this many tokens
    role_first: bool = True  # a role-only chunk at once, before the content (must not count as content)
    endless_role_chunks: bool = False  # role-only chunks as fast as it can, forever (a rogue upstream)


@dataclass
class Call:
    body: Json
    started: float
    ended: float | None = None
    cancelled: bool = False
    completed: bool = False


class FakeProvider:
    """Implements `gateway.providers.Provider`: the engine sees nothing else."""

    server_address = "127.0.0.1"
    server_port = 9
    operations = frozenset({"chat", "embeddings"})

    def __init__(self, name: str, plans: list[Plan] | Plan | None = None) -> None:
        self.name = name
        self.kind = WireFormat.OPENAI
        self.plans = plans if isinstance(plans, list) else [plans or Plan()]
        self.calls: list[Call] = []

    @property
    def speaks(self) -> frozenset[WireFormat]:
        return frozenset({self.kind})

    def stream(self, request: UpstreamRequest) -> AsyncGenerator[list[SSEEvent], None]:
        return self._run(request.body)

    async def reserve(self) -> tuple[Callable[[], None], float]:
        return _nothing, 0.0

    async def call(self, request: UpstreamRequest) -> Json:
        """Embeddings, after the plan's time to first token."""
        plan = self.plans[min(len(self.calls), len(self.plans) - 1)]
        loop = asyncio.get_running_loop()
        call = Call(body=request.body, started=loop.time())
        self.calls.append(call)
        try:
            await asyncio.sleep(plan.ttft_s)
            if plan.error is not None:
                raise plan.error
            call.completed = True
            return {"object": "list", "model": request.body["model"], "usage": {"prompt_tokens": 5, "total_tokens": 5},
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}], "provider": self.name}
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        finally:
            call.ended = loop.time()

    def redact(self, text: str) -> str:
        return text

    async def aclose(self) -> None:
        pass

    async def _run(self, body: Json) -> AsyncGenerator[list[SSEEvent], None]:
        # Like a real provider, nothing is sent until the stream is first iterated.
        plan = self.plans[min(len(self.calls), len(self.plans) - 1)]
        loop = asyncio.get_running_loop()
        call = Call(body=body, started=loop.time())
        self.calls.append(call)
        model = call.body["model"]
        try:
            if plan.role_first and plan.error is None:
                yield [_chunk(model, {"role": "assistant", "content": ""})]
            while plan.endless_role_chunks:
                yield [_chunk(model, {"role": "assistant"}) for _ in range(100)]
            await asyncio.sleep(plan.ttft_s)
            if plan.error is not None and plan.error_after_tokens is None:
                raise plan.error
            for i in range(plan.tokens):
                if i:
                    await asyncio.sleep(plan.per_token_s)
                if plan.error is not None and plan.error_after_tokens == i:
                    raise plan.error
                yield [_chunk(model, {"content": f"{self.name}-{i} "})]
            yield [_chunk(model, {}, finish="stop"),
                   SSEEvent({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                             "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": plan.tokens,
                                                      "total_tokens": 10 + plan.tokens}})]
            call.completed = True
        except (asyncio.CancelledError, GeneratorExit):
            call.cancelled = True
            raise
        finally:
            call.ended = loop.time()


def _nothing() -> None:
    pass


def _chunk(model: str, delta: Json, finish: str | None = None) -> SSEEvent:
    return SSEEvent({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
