"""Run one simulated provider until SIGINT/SIGTERM.

    python -m gateway.simulator --port 9001 [--profile-json '{...}' | --profile FILE.yaml] [--seed N]

Prints its base URL (one line, flushed) once it is listening, so scripts can read where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

import orjson

from gateway.simulator.profile import SimProfile, load_profile_file, parse_profile
from gateway.simulator.server import SimulatedProvider


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway.simulator",
                                     description="A simulated LLM provider speaking the OpenAI and Anthropic APIs.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--profile-json", metavar="JSON", help="the profile as a JSON object")
    source.add_argument("--profile", metavar="FILE", help="a YAML file holding the profile mapping")
    parser.add_argument("--seed", type=int, default=0, help="seed of the provider's random choices")
    parser.add_argument("--name", default="sim", help="name shown in /_sim/stats")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                        help="event loop: uvloop when installed (auto), or force one")
    return parser


def read_profile(args: argparse.Namespace) -> SimProfile:
    """The profile the arguments ask for; ValueError names the bad field or the unreadable source."""
    if args.profile_json is not None:
        try:
            data = orjson.loads(args.profile_json)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"--profile-json: not valid JSON ({exc})") from None
        return parse_profile(data)
    if args.profile is not None:
        try:
            return load_profile_file(args.profile)
        except OSError as exc:
            raise ValueError(f"--profile: cannot read {args.profile}: {exc.strerror}") from None
    return SimProfile()


async def serve(profile: SimProfile, *, port: int, seed: int, name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' event loops
            loop.add_signal_handler(sig, stop.set)
    async with SimulatedProvider(profile, name=name, seed=seed, port=port) as sim:
        print(sim.base_url, flush=True)
        await stop.wait()


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("error: --loop uvloop: uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        profile = read_profile(args)
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            runner.run(serve(profile, port=args.port, seed=args.seed, name=args.name))
    except OSError as exc:  # e.g. the port is taken
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
