"""A simulated LLM provider: one aiohttp server on 127.0.0.1 speaking both OpenAI and Anthropic wire formats.

Routes: `POST /v1/chat/completions`, `POST /v1/responses` and `POST /v1/embeddings` (OpenAI), `POST /v1/messages`
and `POST /v1/messages/count_tokens` (Anthropic), `GET /v1/models` and `GET /v1/models/{id}` (shape by the
`anthropic-version` header), and the control plane `GET /_sim/stats`, `GET /_sim/requests`, `POST /_sim/reset`,
`GET|PUT /_sim/profile`. Behaviour comes from a `SimProfile`; randomness from one `random.Random(seed)`.

Every counted route shares the same door: hang, outage, key check, and the three random draws (error, stall,
mid-stream failure). Embeddings and token counts are one JSON body after the first-token latency (ttft plus any
stall); a mid-stream failure is then a server error after that wait, as for a non-streaming chat request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from gateway.simulator.anthropic_wire import AnthropicDialect, count_tokens_body
from gateway.simulator.billing import NO_BILLING, Billing, PromptCache, reasoning_tokens
from gateway.simulator.chat import BadRequest, ChatRequest, Dialect, Finish, StreamEncoder
from gateway.simulator.cloud_routes import CloudRoutes
from gateway.simulator.control import add_uncounted_routes, same_key
from gateway.simulator.embeddings import embeddings_body, parse_embeddings_request
from gateway.simulator.midstream import FaultDraws, continue_prefill
from gateway.simulator.openai_wire import OpenAIDialect
from gateway.simulator.profile import SimProfile
from gateway.simulator.responses_wire import ResponsesDialect
from gateway.simulator.stats import SimStats

HOST = "127.0.0.1"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_OPENAI = OpenAIDialect()
_ANTHROPIC = AnthropicDialect()
_RESPONSES = ResponsesDialect()
# One counted route's own handling, after the shared door: (request, dialect, parsed body, profile, seq).
_Serve = Callable[[web.Request, Dialect, Any, SimProfile, int], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one successful request will do, drawn up front so a request's random choices are made together."""

    first_delay_s: float  # ttft, plus the stall when one was drawn
    units: int  # tokens to send (text tokens, structured-answer tokens, or tool-argument pieces)
    finish: Finish
    midstream_error: bool
    error_after: int = 1  # tokens sent before the mid-stream error
    stall_after: int | None = None  # tokens sent before a mid-stream stall of `stall_s`
    stall_s: float = 0.0


class SimulatedProvider:
    """One simulated provider. Use `async with SimulatedProvider(profile) as sim:` and point an SDK at it:
    openai `base_url=sim.base_url + "/v1"`, anthropic `base_url=sim.base_url`.
    """

    def __init__(self, profile: SimProfile | None = None, *, name: str = "sim", seed: int = 0,
                 port: int = 0) -> None:
        self.profile: SimProfile = profile if profile is not None else SimProfile()  # read once per request
        self.name = name
        self.seed = seed
        self.stats = SimStats()
        self._rng = random.Random(seed)
        self._faults = FaultDraws(seed)  # where mid-stream faults fall: a random stream of its own
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._epoch = 0.0  # loop time the outage clock counts from
        self._seq = 0  # numbers ids (chatcmpl-simN, msg_simN) deterministically
        self.clouds = CloudRoutes(self)  # Azure OpenAI, Bedrock and Vertex routes (gateway.simulator.cloud_routes)
        self.prompt_cache = PromptCache()  # this provider's own: another provider has not seen its prompts

    # ---- lifecycle ---------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"simulated provider {self.name!r} is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"simulated provider {self.name!r} is already started")
        # handler_cancellation: a client that goes away cancels its handler, which is how `disconnected` is
        # counted and how a hedged loser stops costing anything. A short shutdown_timeout keeps stop() fast
        # even with hanging requests; access logs are off because this is also the load-test upstream.
        runner = web.AppRunner(self._make_app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, HOST, self._requested_port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._epoch = asyncio.get_running_loop().time()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimulatedProvider:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def reset(self) -> None:
        """Zero the counters, restart the outage clock and re-seed, so a run after a reset repeats exactly."""
        self.stats.reset()
        self._rng.seed(self.seed)
        self._faults.reset()
        self._seq = 0
        self.prompt_cache.reset()
        self._epoch = asyncio.get_running_loop().time()

    def elapsed_s(self) -> float:
        """Seconds on the outage clock: since start or the last reset."""
        return asyncio.get_running_loop().time() - self._epoch

    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - the agreed test-facing API
        """Wait until no chat request is being handled (e.g. after a client cancelled, until the server noticed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.stats.in_flight > 0:
            if loop.time() >= deadline:
                raise TimeoutError(f"{self.name}: {self.stats.in_flight} request(s) still in flight after {timeout}s")
            await asyncio.sleep(0.005)

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # load tests send long prompts
        app.router.add_post("/v1/chat/completions", self._handle_openai)
        app.router.add_post("/v1/embeddings", self._handle_embeddings)
        app.router.add_post("/v1/messages", self._handle_anthropic)
        app.router.add_post("/v1/responses", self._handle_responses)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        add_uncounted_routes(app, self)
        self.clouds.add_to(app)
        return app

    # ---- counted requests ---------------------------------------------------------------------------------

    async def _handle_openai(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, "chat.completions", _OPENAI, self._serve_chat)

    async def _handle_anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, "messages", _ANTHROPIC, self._serve_chat)

    async def _handle_responses(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, "responses", _RESPONSES, self._serve_chat)

    async def _handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, "embeddings", _OPENAI, self._serve_embeddings)

    async def _handle_count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, "count_tokens", _ANTHROPIC, self._serve_count_tokens)

    async def _counted(self, request: web.Request, route: str, dialect: Dialect, serve: _Serve) -> web.StreamResponse:
        stats = self.stats
        stats.received += 1
        stats.in_flight += 1
        self._seq += 1
        try:
            return await self._door(request, route, dialect, self.profile, self._seq, serve)
        except asyncio.CancelledError:
            # handler_cancellation: the client closed the connection while we were waiting or writing.
            stats.disconnected += 1
            raise
        finally:
            stats.in_flight -= 1

    async def _door(self, request: web.Request, route: str, dialect: Dialect, profile: SimProfile, seq: int,
                    serve: _Serve) -> web.StreamResponse:
        """Read and record the request, then what refuses any counted request before its own handling."""
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.stats.record(route, request.path_qs, request.headers, body)

        if profile.hang:
            await asyncio.Future()  # never resolves: ends when the client leaves and aiohttp cancels us
        if profile.outages and profile.outage_at(self.elapsed_s()):
            return await self._error(request, dialect, seq, profile, profile.outage_status, "Simulated outage.")
        if profile.require_key is not None:
            # A cloud dialect checks its own auth (a SigV4 signature covers the path and the body).
            authorize = getattr(dialect, "authorize", None)
            refusal = authorize(request, raw, profile.require_key) if authorize is not None else (
                None if same_key(dialect.credential(request.headers), profile.require_key)
                else (401, "Invalid API key (simulated).", "invalid_api_key"))
            if refusal is not None:
                return await self._error(request, dialect, seq, profile, refusal[0], refusal[1], code=refusal[2])
        if body is None:
            return await self._error(request, dialect, seq, profile, 400, "Request body is not valid JSON.")
        return await serve(request, dialect, body, profile, seq)

    def _bill(self, dialect: Dialect, body: Any, profile: SimProfile) -> Billing:
        """Cache reads and writes (the prompt is cached as it arrives) and reasoning, in this request's format."""
        anthropic = dialect is _ANTHROPIC
        now = asyncio.get_running_loop().time()
        billing = NO_BILLING
        if profile.prompt_cache:
            billing = (self.prompt_cache.bill_anthropic(body, now) if anthropic
                       else self.prompt_cache.bill_openai(body, now))
        reasoning = reasoning_tokens(body, anthropic, profile.reasoning_tokens)
        return dataclasses.replace(billing, reasoning=reasoning) if reasoning else billing

    def _draw(self, profile: SimProfile) -> tuple[bool, bool, bool]:
        """Whether this request fails at once, stalls, and fails after its first token.

        Always draw the three chances, whatever the probabilities, so two profiles that differ only in
        rates still see the same random stream for everything else.
        """
        rng = self._rng
        return (rng.random() < profile.error_rate, rng.random() < profile.stall_prob,
                rng.random() < profile.midstream_error_rate)

    async def _serve_chat(self, request: web.Request, dialect: Dialect, body: Any, profile: SimProfile,
                          seq: int) -> web.StreamResponse:
        try:
            chat = continue_prefill(dialect.parse_request(body), body, anthropic=dialect is _ANTHROPIC,
                                    output_tokens=profile.output_tokens)
        except BadRequest as exc:
            return await self._error(request, dialect, seq, profile, 400, exc.message, param=exc.param)
        fails, stalls, breaks_midstream = self._draw(profile)
        if fails:
            return await self._fail(request, dialect, seq, profile)
        chat = dataclasses.replace(chat, billing=self._bill(dialect, body, profile))
        plan = self._plan(profile, chat, stalls, breaks_midstream)
        encoder = dialect.encoder(chat, seq)
        headers = {dialect.request_id_header: f"req_sim{seq}"}
        if chat.stream:  # a cloud dialect may frame its stream otherwise (Bedrock's event stream)
            headers.update(getattr(dialect, "stream_headers", {}))
            return await self._stream(request, encoder, headers, profile, plan, chat)
        return await self._respond(request, dialect, seq, encoder, headers, profile, plan)

    async def _serve_embeddings(self, request: web.Request, dialect: Dialect, body: Any, profile: SimProfile,
                                seq: int) -> web.StreamResponse:
        try:
            embeddings = parse_embeddings_request(body)
        except BadRequest as exc:
            return await self._error(request, dialect, seq, profile, 400, exc.message, param=exc.param)
        return await self._whole(request, dialect, seq, profile, lambda: embeddings_body(embeddings))

    async def _serve_count_tokens(self, request: web.Request, dialect: Dialect, body: Any, profile: SimProfile,
                                  seq: int) -> web.StreamResponse:
        try:
            answer = count_tokens_body(body)
        except BadRequest as exc:
            return await self._error(request, dialect, seq, profile, 400, exc.message, param=exc.param)
        return await self._whole(request, dialect, seq, profile, lambda: answer)

    async def _whole(self, request: web.Request, dialect: Dialect, seq: int, profile: SimProfile,
                     build: Callable[[], bytes]) -> web.StreamResponse:
        """A request answered with one JSON body after the first-token latency: embeddings, token counts."""
        fails, stalls, breaks_midstream = self._draw(profile)
        if fails:
            return await self._fail(request, dialect, seq, profile)
        delay_ms = profile.ttft.sample_ms(self._rng) + (profile.stall_ms if stalls else 0.0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if breaks_midstream:
            status = _midstream_status(profile)
            return await self._error(request, dialect, seq, profile, status, "Failed during generation (simulated).")
        resp = web.Response(body=build(), content_type="application/json",
                            headers={dialect.request_id_header: f"req_sim{seq}"})
        if await self._send(request, resp):
            self.stats.completed += 1
        return resp

    async def _fail(self, request: web.Request, dialect: Dialect, seq: int, profile: SimProfile) -> web.StreamResponse:
        message = "Overloaded" if profile.error_status == 529 else "Simulated error."
        return await self._error(request, dialect, seq, profile, profile.error_status, message)

    def _plan(self, profile: SimProfile, chat: ChatRequest, stalls: bool, breaks_midstream: bool) -> _Plan:
        first_ms = profile.ttft.sample_ms(self._rng) + (profile.stall_ms if stalls else 0.0)
        if chat.tool is not None:
            # max_tokens is not applied to tool calls: the arguments are small and must stay valid JSON.
            return _Plan(first_ms / 1000, len(chat.tool.pieces), Finish.TOOL_CALL, breaks_midstream)
        # A structured answer is as long as its JSON, whatever output_tokens says; max_tokens still cuts it.
        units = profile.output_tokens if chat.json_pieces is None else len(chat.json_pieces)
        finish = Finish.STOP
        if chat.max_tokens is not None and chat.max_tokens < units:
            units, finish = chat.max_tokens, Finish.LENGTH
        faults = self._faults
        return _Plan(first_ms / 1000, units, finish, breaks_midstream,
                     faults.error_after(profile.midstream_error_at, units) if breaks_midstream else 1,
                     faults.stall_after(profile.midstream_stall_rate, profile.midstream_stall_at, units),
                     profile.midstream_stall_ms / 1000)

    async def _stream(self, request: web.Request, encoder: StreamEncoder, headers: dict[str, str],
                      profile: SimProfile, plan: _Plan, chat: ChatRequest) -> web.StreamResponse:
        stats = self.stats
        per_token = profile.per_token
        tool = chat.tool.pieces if chat.tool is not None else None
        resp = web.StreamResponse(headers={**_SSE_HEADERS, **headers})
        try:
            # Headers go out at once, as real APIs do; the preamble events wait for the first token so a
            # client cannot mistake message_start or the role chunk for progress during a stall.
            await resp.prepare(request)
            if plan.first_delay_s > 0:
                await asyncio.sleep(plan.first_delay_s)
            out = [encoder.stream_open(), encoder.stream_text_open() if tool is None else encoder.stream_tool_open()]
            pending = 0  # tokens in `out`, not yet written
            for i in range(plan.units):
                if i and not per_token.is_zero:
                    gap_ms = per_token.sample_ms(self._rng)
                    if gap_ms > 0:
                        await resp.write(b"".join(out))
                        stats.tokens_sent += pending
                        out.clear()
                        pending = 0
                        await asyncio.sleep(gap_ms / 1000)
                out.append(encoder.stream_token(i) if tool is None else encoder.stream_tool_piece(tool[i]))
                pending += 1
                if i + 1 == plan.stall_after:  # silence mid-answer, after what was generated so far is out
                    await resp.write(b"".join(out))
                    stats.tokens_sent += pending
                    out.clear()
                    pending = 0
                    await asyncio.sleep(plan.stall_s)
                if plan.midstream_error and i + 1 == plan.error_after:
                    status = _midstream_status(profile)
                    out.append(encoder.stream_error(status))
                    await resp.write(b"".join(out))
                    stats.tokens_sent += pending
                    await resp.write_eof()
                    stats.count_error(status)
                    return resp
            out.append(encoder.stream_close(plan.units, plan.finish))
            await resp.write(b"".join(out))
            stats.tokens_sent += pending
            await resp.write_eof()
        except ConnectionResetError:  # aiohttp's ClientConnectionResetError too: a write found the client gone
            stats.disconnected += 1
            return resp
        stats.completed += 1
        return resp

    async def _respond(self, request: web.Request, dialect: Dialect, seq: int, encoder: StreamEncoder,
                       headers: dict[str, str], profile: SimProfile, plan: _Plan) -> web.StreamResponse:
        delay_s = plan.first_delay_s
        if not profile.per_token.is_zero:
            delay_s += sum(profile.per_token.sample_ms(self._rng) for _ in range(plan.units - 1)) / 1000
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if plan.midstream_error:
            # A whole-body answer cannot fail half-way: the client sees a server error after the wait.
            status = _midstream_status(profile)
            return await self._error(request, dialect, seq, profile, status, "Failed during generation (simulated).")
        resp = web.Response(body=encoder.response_body(plan.units, plan.finish), content_type="application/json",
                            headers=headers)
        if await self._send(request, resp):
            self.stats.completed += 1
            self.stats.tokens_sent += plan.units
        return resp

    async def _error(self, request: web.Request, dialect: Dialect, seq: int, profile: SimProfile, status: int,
                     message: str, *, code: str | None = None, param: str | None = None) -> web.StreamResponse:
        headers = {dialect.request_id_header: f"req_sim{seq}"}
        if status == 429:
            headers["retry-after"] = _format_seconds(profile.retry_after_s)
        error_headers = getattr(dialect, "error_headers", None)  # a cloud's own (Bedrock's x-amzn-ErrorType)
        if error_headers is not None:
            headers = error_headers(status, code, headers)
        resp = web.Response(status=status, body=dialect.error_body(status, message, code=code, param=param),
                            content_type="application/json", headers=headers)
        if await self._send(request, resp):
            self.stats.count_error(status)
        return resp

    async def _send(self, request: web.Request, resp: web.Response) -> bool:
        """Write a whole response now (not after the handler returns) so `completed` means written."""
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except ConnectionResetError:
            self.stats.disconnected += 1
            return False
        return True


def _midstream_status(profile: SimProfile) -> int:
    """A mid-generation failure is a server fault: error_status when it is one, else 500."""
    return profile.error_status if profile.error_status >= 500 else 500


def _format_seconds(seconds: float) -> str:
    """Retry-After value: whole seconds as an integer (what most clients expect), else up to ms precision."""
    if float(seconds).is_integer():
        return str(int(seconds))
    return f"{seconds:.3f}".rstrip("0").rstrip(".")

