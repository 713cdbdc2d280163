"""`make demo`: simulated providers, the gateway in front of them, a few requests through both doors.

No keys, no network: everything listens on 127.0.0.1. Run `python -m gateway.demo --once` to exit after
the requests instead of serving until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

import anthropic
import openai
from aiohttp import web

from gateway.cli import describe
from gateway.config import load_config
from gateway.engine import CompositeHooks, Hooks, RequestSummary
from gateway.server import Gateway, build_app
from gateway.server.connections import GatewayRunner
from gateway.simulator import SimulatedProvider, parse_profile
from gateway.telemetry import setup_telemetry

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "demo.yaml"

# The OpenAI-kind primary has a heavy tail and rare long stalls: what hedging is for.
PRIMARY = {"ttft": {"median_ms": 120, "sigma": 0.6}, "per_token": 5,
           "stall_prob": 0.25, "stall_ms": 3000, "output_tokens": 12}
BACKUP = {"ttft": {"median_ms": 180, "sigma": 0.3}, "per_token": 5, "output_tokens": 12}


class Collect(Hooks):
    """The finished requests by id. A request is reported after its last byte was written, which may be a
    moment after the client has its answer: rows are matched to requests by the gateway's request id."""

    def __init__(self) -> None:
        self.records: dict[int, RequestSummary] = {}
        self._changed = asyncio.Event()

    def request_finished(self, summary: RequestSummary) -> None:
        self.records[summary.request_id] = summary
        self._changed.set()

    async def get(self, request_id: int) -> RequestSummary:
        async with asyncio.timeout(30):
            while request_id not in self.records:
                self._changed.clear()
                await self._changed.wait()
        return self.records[request_id]


def _row(n: int, door: str, stream: bool, record: RequestSummary) -> str:
    winner = record.winner.target.label if record.winner else f"error {record.status}"
    attempts = ", ".join(f"{a.provider}:{a.outcome}" for a in record.attempts)
    latency_ms = record.latency_s * 1000
    return (f"{n:>2}  {door:<9} {'stream' if stream else 'json':<6} {winner:<32} {latency_ms:>7.0f} ms  "
            f"${record.cost_usd * 1000:>8.5f}  ${record.wasted_cost_usd * 1000:>8.5f}  {attempts}")


async def _requests(base_url: str, collect: Collect) -> None:
    oai = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="demo", max_retries=0)
    ant = anthropic.AsyncAnthropic(base_url=base_url, api_key="demo", max_retries=0)
    print("\n #  door      mode   winner                            latency   cost/1k req  wasted/1k    attempts")
    messages = [{"role": "user", "content": "Say hello in a few words."}]
    for n in range(1, 11):
        door, stream = ("anthropic", n % 4 == 0) if n > 6 else ("openai", n % 2 == 0)
        if door == "openai":
            if stream:
                chunks = await oai.chat.completions.create(model="chat", messages=messages,  # type: ignore[arg-type]
                                                           stream=True)
                async for _ in chunks:  # type: ignore[union-attr]
                    pass
                request_id = chunks.response.headers["x-gateway-request-id"]  # type: ignore[union-attr]
            else:
                raw = await oai.chat.completions.with_raw_response.create(
                    model="chat", messages=messages)  # type: ignore[arg-type]
                request_id = raw.headers["x-gateway-request-id"]
        elif stream:
            async with ant.messages.stream(model="claude", max_tokens=64, messages=messages) as s:  # type: ignore[arg-type]
                await s.get_final_message()
                request_id = s.response.headers["x-gateway-request-id"]
        else:
            raw_message = await ant.messages.with_raw_response.create(
                model="claude", max_tokens=64, messages=messages)  # type: ignore[arg-type]
            request_id = raw_message.headers["x-gateway-request-id"]
        print(_row(n, door, stream, await collect.get(int(request_id))))
    await oai.close()
    await ant.close()


async def main_async(once: bool) -> None:
    env = dict(os.environ)
    config = load_config(DEMO_CONFIG, env)
    sim_a = SimulatedProvider(parse_profile(PRIMARY), name="sim-openai", seed=1,
                              port=int(env.get("SIM_OPENAI_PORT", "9101")))
    sim_b = SimulatedProvider(parse_profile(BACKUP), name="sim-anthropic", seed=2,
                              port=int(env.get("SIM_ANTHROPIC_PORT", "9102")))
    await sim_a.start()
    await sim_b.start()
    collect = Collect()
    telemetry = setup_telemetry(config.telemetry, env)  # spans to demo-traces.jsonl, metrics at /metrics
    telemetry.hooks = CompositeHooks(telemetry.hooks, collect)
    runner = GatewayRunner(build_app(Gateway(config, telemetry=telemetry)), config.server,
                           handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.server.host, config.server.port).start()
    base_url = f"http://{config.server.host}:{config.server.port}"
    print("Simulated providers: sim-openai (heavy tail, 25% stalls of 3 s) at", sim_a.base_url,
          "and sim-anthropic at", sim_b.base_url)
    print(describe(config))
    try:
        await _requests(base_url, collect)
        print(f"\nsim-openai saw {sim_a.stats.received} requests, {sim_a.stats.disconnected} cut by the gateway "
              f"(cancelled losers); sim-anthropic saw {sim_b.stats.received}, {sim_b.stats.disconnected} cut.")
        print(f"""
The gateway is at {base_url}. Point any OpenAI or Anthropic SDK at it:

  curl -s {base_url}/v1/chat/completions -H 'content-type: application/json' \\
       -d '{{"model": "chat", "messages": [{{"role": "user", "content": "hi"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{base_url}/v1", api_key="unused")
  client.chat.completions.create(model="chat", messages=[{{"role": "user", "content": "hi"}}])

  from anthropic import Anthropic
  Anthropic(base_url="{base_url}", api_key="unused").messages.create(
      model="claude", max_tokens=100, messages=[{{"role": "user", "content": "hi"}}])

Metrics: {base_url}/metrics
Traces:  {config.telemetry.traces_file} (read them with: .venv/bin/gateway traces {config.telemetry.traces_file})""")
        await telemetry.force_flush()
        if not once:
            print("\nServing until Ctrl-C.")
            await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await sim_a.stop()
        await sim_b.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.demo")
    parser.add_argument("--once", action="store_true", help="exit after the demo requests")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args.once))


if __name__ == "__main__":
    main()
