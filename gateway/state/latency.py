"""Latency windows shared by replicas (through Redis) or by the workers of one machine (through the hub).

Each process records its samples into its targets' `SharedWindow`s (`gateway.policies.sketch`: bin counts
per wall-clock bucket). Every `SYNC_INTERVAL_S`, in the background, one round trip publishes what it
recorded since the last one and reads back the merge of every process's buckets that its windows cover;
the merge becomes each window's view. No request waits on it: a request reads the last view (or, while
the exchange fails, its local window). At start, `start_up` runs one exchange before the first request,
so a new replica hedges at the learned delay at once.

In Redis a (target, bucket) is one hash, `{key_prefix}latency:{SCHEMA}:{provider}:{model}:{ttft|total}:{bucket}`,
a field per bin holding its count. A process adds its new samples with HINCRBY (one Lua script per bucket,
which also extends the TTL), so the hash is the merged sketch: the DDSketch merge is bin-wise addition.
A key expires once its bucket has left the longest window reading it (plus one bucket). The hub keeps the
same buckets in its memory.

Settled buckets: a bucket that ended more than `SETTLE_S` ago gets no more samples (each process
publishes a bucket's last samples at its next exchange), so it is read once more and then kept here: an
exchange reads about two buckets per target, not the whole window. After a reconnection everything is
read again.

Away (Redis or the hub down or timing out): the views are not current, so every delay comes from the
process's local windows, which record all along; what was taken for publishing is given back and published
at the next exchange that works, so the others learn it late rather than never (unless its bucket has
left the window by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import orjson

from gateway.clock import Clock, monotonic
from gateway.policies.sketch import (
    BUCKET_S,
    MAX_WINDOW_S,
    Bins,
    LatencySketch,
    SharedWindow,
    TargetKey,
    bucket_of,
    first_bucket,
    flat,
    unflat,
)
from gateway.state.errors import HubUnavailable, RedisUnavailable

if TYPE_CHECKING:  # redis-py is imported only by a gateway that uses it: see gateway.state.backend
    from redis.asyncio import Redis

    from gateway.state.hublink import HubLink
    from gateway.state.link import RedisLink

log = logging.getLogger("gateway.state")

SYNC_INTERVAL_S = 1.0
# Past this after its end a bucket gets no more samples: every process publishes within one interval (plus
# the exchange's own time); the rest is for clocks that disagree by up to a second or two.
SETTLE_S = 3 * SYNC_INTERVAL_S + 2.0
MAX_TARGETS = 256  # (provider, model, stream) windows shared; more stay local (each config target makes 2)
# The sketch parameters, in every key: a process with other parameters (another version) never mixes its
# bins with these. DDSketch, 1% relative accuracy, values clamped to [1 ms, 1 h], 10 s buckets.
SCHEMA = "dd1"

Publish = tuple[TargetKey, int, Bins, float]  # target, bucket, new samples' bins, the target's window (TTL)
Read = tuple[TargetKey, int]  # target, bucket


class LatencyExchange(Protocol):
    """One round trip: add `publish` to the shared buckets, then read the merged `reads` (in that order)."""

    name: str  # "redis" or "hub", for /healthz

    @property
    def up(self) -> bool: ...

    @property
    def connections(self) -> int:
        """Times the link came up: a change means the others may have published while it was away."""
        ...

    async def ready(self) -> None:
        """Return once the link's first connection attempt is over (up or not)."""
        ...

    async def exchange(self, publish: Sequence[Publish], reads: Sequence[Read]) -> list[Bins]:
        """One reply per read; raises RedisUnavailable or HubUnavailable."""
        ...


class SharedLatency:
    """This process's shared latency windows, and the background exchange that keeps their views current."""

    def __init__(self, exchange: LatencyExchange, *, wall: Clock = time.time, clock: Clock = monotonic,
                 interval_s: float = SYNC_INTERVAL_S) -> None:
        self.exchange = exchange
        self._wall = wall
        self._clock = clock
        self._interval_s = interval_s
        self._windows: dict[TargetKey, SharedWindow] = {}
        self._watched: dict[TargetKey, float] = {}  # target -> the longest window read over it (capped)
        self._settled: dict[Read, LatencySketch] = {}
        self._seen_connections = 0
        self._lock = asyncio.Lock()  # one exchange at a time: the background one or start_up's
        self._task: asyncio.Task[None] | None = None
        self._warned_bound = False
        self.current = False
        self.synced_at: float | None = None  # on `clock`: when the last exchange succeeded

    def watch(self, windows: Mapping[TargetKey, float]) -> None:
        for key, window_s in windows.items():
            if self.window(key) is not None:
                self._watched[key] = max(self._watched[key], min(window_s, MAX_WINDOW_S))

    def window(self, key: TargetKey) -> SharedWindow | None:
        window = self._windows.get(key)
        if window is not None:
            return window
        if len(self._windows) >= MAX_TARGETS:
            if not self._warned_bound:
                self._warned_bound = True
                log.warning("shared latency: more than %d targets; the others keep local windows only", MAX_TARGETS)
            return None
        window = self._windows[key] = SharedWindow(wall=self._wall)
        self._watched[key] = 60.0  # raised by `watch`; a target in no config still gets the typical window
        return window

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="latency-sync")

    async def start_up(self, timeout_s: float) -> None:
        """Before the first request: the link's first attempt, then one exchange, within `timeout_s` at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.exchange.ready()
                await self.sync_once()

    async def sync_once(self) -> bool:
        """Publish what was recorded since the last exchange and install the merge; False if it failed."""
        async with self._lock:
            return await self._sync()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sync_once()
            except Exception:  # a bug must not end the sharing for good, nor leave stale views in use
                log.exception("shared latency: exchange failed")
                self._lose()

    async def _sync(self) -> bool:
        exchange = self.exchange
        if not exchange.up:
            self._lose()
            return False
        if exchange.connections != self._seen_connections:  # others may have published while it was away
            self._seen_connections = exchange.connections
            self._settled.clear()
        now = self._wall()
        taken: dict[TargetKey, dict[int, Bins]] = {}
        publish: list[Publish] = []
        for key, window in self._windows.items():
            pending = window.take_pending()
            if pending:
                taken[key] = pending
                publish.extend((key, bucket, bins, self._watched[key]) for bucket, bins in pending.items())
        current = bucket_of(now)
        wanted = {key: range(first_bucket(now, window_s), current + 1) for key, window_s in self._watched.items()}
        reads = [(key, bucket) for key, buckets in wanted.items() for bucket in buckets
                 if (key, bucket) not in self._settled]
        try:
            replies = await exchange.exchange(publish, reads)
        except (RedisUnavailable, HubUnavailable):
            for key, pending in taken.items():
                self._windows[key].give_back(pending)
            self._lose()
            return False
        read = {where: LatencySketch(bins) for where, bins in zip(reads, replies, strict=True)}
        settled_before = bucket_of(now - SETTLE_S)
        for (key, bucket), sketch in read.items():
            if bucket < settled_before:
                self._settled[(key, bucket)] = sketch
        self._settled = {(key, bucket): sketch for (key, bucket), sketch in self._settled.items()
                         if key in wanted and bucket >= wanted[key].start}
        known = {**self._settled, **read}
        for key, buckets in wanted.items():
            self._windows[key].install({bucket: known[(key, bucket)] for bucket in buckets if (key, bucket) in known})
        self.current = True
        self.synced_at = self._clock()
        return True

    def _lose(self) -> None:
        self.current = False
        for window in self._windows.values():
            window.lose()

    def health(self) -> dict[str, Any]:
        """For /healthz: where latency is shared, whether the views are current, and per target with samples
        in the last minute, their count and a few quantiles of the shared view."""
        targets: dict[str, dict[str, float | int]] = {}
        for (provider, model, stream), window in list(self._windows.items())[:MAX_TARGETS]:
            samples = window.samples(60.0) if self.current else 0
            if samples:
                quantiles = {f"p{round(q * 100)}_ms": round((window.quantile_s(q, min_samples=1, window_s=60.0)
                                                            or 0.0) * 1000, 1) for q in (0.5, 0.95, 0.99)}
                targets[f"{provider}/{model}/{'ttft' if stream else 'total'}"] = {"samples": samples, **quantiles}
        synced = None if self.synced_at is None else round(self._clock() - self.synced_at, 1)
        return {"shared_through": self.exchange.name, "view": "current" if self.current else "local",
                "synced_s_ago": synced, "targets": targets}

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


# KEYS[1]: one (target, bucket) hash. ARGV[1]: its TTL in ms; then bin, count, bin, count...
# Adds the counts (HINCRBY: the sketches' merge) and lengthens the TTL, never shortens it.
_PUBLISH_LUA = """
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: (target, bucket) hashes. Each comes back as one string, "bin,count,bin,count,...": redis-py parses a
# reply element by element in Python (~4 µs each), so a 200-bin hash read as HGETALL would cost ~2 ms.
_READ_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = table.concat(redis.call('HGETALL', key), ',')
end
return out
"""


class RedisLatencyExchange:
    name = "redis"

    def __init__(self, link: RedisLink, key_prefix: str, *, wall: Clock = time.time) -> None:
        self._link = link
        self._prefix = f"{key_prefix}latency:{SCHEMA}:"
        self._wall = wall
        self._script = link.client.register_script(_PUBLISH_LUA)
        self._read = link.client.register_script(_READ_LUA)

    @property
    def up(self) -> bool:
        return self._link.up

    @property
    def connections(self) -> int:
        return self._link.connections

    async def ready(self) -> None:
        await self._link.tried.wait()

    def key(self, target: TargetKey, bucket: int) -> str:
        provider, model, stream = target
        # Quoted: a provider or model name may hold ':' (Bedrock's model ids do).
        kind = "ttft" if stream else "total"
        return f"{self._prefix}{quote(provider, safe='')}:{quote(model, safe='')}:{kind}:{bucket}"

    async def exchange(self, publish: Sequence[Publish], reads: Sequence[Read]) -> list[Bins]:
        now = self._wall()

        async def call(client: Redis) -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for target, bucket, bins, window_s in publish:
                    # Until the bucket has left the target's longest window, plus one bucket of slack.
                    ttl_ms = max(1000, int(((bucket + 1) * BUCKET_S + window_s + BUCKET_S - now) * 1000))
                    await self._script(keys=[self.key(target, bucket)], args=[ttl_ms, *flat(bins)], client=pipe)
                if reads:  # after the publications, on the same connection: it sees them
                    await self._read(keys=[self.key(target, bucket) for target, bucket in reads], client=pipe)
                return list(await pipe.execute())

        replies = await self._link.run(call)
        read = replies[len(publish)] if reads else []
        if not isinstance(read, list) or len(read) != len(reads):
            raise RedisUnavailable  # not the answer to this exchange
        return [unflat(reply.split(b",")) if isinstance(reply, bytes) else {} for reply in read]


class HubLatencyExchange:
    name = "hub"

    def __init__(self, link: HubLink) -> None:
        self._link = link

    @property
    def up(self) -> bool:
        return self._link.up

    @property
    def connections(self) -> int:
        return self._link.connections

    async def ready(self) -> None:
        await self._link.ready(3600.0)  # bounded by the caller (`start_up`)

    async def exchange(self, publish: Sequence[Publish], reads: Sequence[Read]) -> list[Bins]:
        body = orjson.dumps([[[*target, bucket, flat(bins)] for target, bucket, bins, _ in publish],
                             [[*target, bucket] for target, bucket in reads]])
        _, payload = await self._link.request("latency", payload=body)
        try:
            replies = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise HubUnavailable from None
        if not isinstance(replies, list) or len(replies) != len(reads):
            raise HubUnavailable  # not an answer to this exchange: treated like no answer (local windows)
        return [unflat(reply) if isinstance(reply, list) else {} for reply in replies]
