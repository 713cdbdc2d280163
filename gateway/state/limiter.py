"""Rate limits behind an async interface: this process's `RateLimiter`, or one token bucket per key in Redis.

The Redis limiter runs the same token bucket as `gateway.policies.ratelimit` (same refill, same slack, same
debt, same exact Retry-After) as one Lua script, so check-and-take is atomic across every replica, and
reads the time from Redis (`TIME`), so replicas' clocks do not matter. While Redis is unavailable it
falls back to the local `RateLimiter`: each replica then enforces the limit on its own (the sum across
replicas may reach N times the limit until Redis is back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.policies.ratelimit import _SLACK, RateLimiter, RateLimitOptions
from gateway.state.errors import RedisUnavailable

if TYPE_CHECKING:  # redis-py is imported only by a gateway that uses it: see gateway.state.backend
    from redis.asyncio import Redis

    from gateway.state.link import RedisLink

# KEYS[1]: the key's hash {r: requests level, t: tokens level, at: seconds of the last update}.
# ARGV: op ("check" or "settle"), rpm (0 = unlimited), tpm (0 = unlimited), amount (check: the token
# estimate; settle: the correction, actual - estimate), slack.
# check returns nil when admitted, else the wait in seconds as a string (a Lua number would be truncated
# to an integer reply). A missing field is a full bucket, exactly like a key the local limiter never saw.
# The key expires once both buckets would be full again: from then on it is indistinguishable from new.
TOKEN_BUCKET_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local op, rpm, tpm = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local amount, slack = tonumber(ARGV[4]), tonumber(ARGV[5])
local saved = redis.call('HMGET', KEYS[1], 'r', 't', 'at')
local elapsed = math.max(0, now - (tonumber(saved[3]) or now))
local function refilled(level, capacity)
  if level == nil then return capacity end
  return math.min(capacity, level + elapsed * capacity / 60)
end
local function wait_s(level, capacity, need)
  local shortfall = math.min(need, capacity) - level
  if shortfall <= slack * capacity then return 0 end
  return shortfall * 60 / capacity
end
local req, tok
if rpm > 0 then req = refilled(tonumber(saved[1]), rpm) end
if tpm > 0 then tok = refilled(tonumber(saved[2]), tpm) end
if op == 'check' then
  local wait = 0
  if rpm > 0 then wait = wait_s(req, rpm, 1) end
  if tpm > 0 then wait = math.max(wait, wait_s(tok, tpm, amount)) end
  if wait > 0 then return string.format('%.17g', wait) end
  if rpm > 0 then req = req - 1 end
  if tpm > 0 then tok = tok - amount end
else
  tok = math.min(tpm, tok - amount)
end
local full_in = 0
local fields = {'at', string.format('%.17g', math.max(now, tonumber(saved[3]) or now))}
if rpm > 0 then
  full_in = math.max(full_in, (rpm - req) * 60 / rpm)
  table.insert(fields, 'r'); table.insert(fields, string.format('%.17g', req))
end
if tpm > 0 then
  full_in = math.max(full_in, (tpm - tok) * 60 / tpm)
  table.insert(fields, 't'); table.insert(fields, string.format('%.17g', tok))
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], math.ceil(full_in * 1000) + 1000)
return false
"""


class SharedLimiter(Protocol):
    """Per gateway key rate limits, with the semantics of `RateLimiter` (see it), awaited."""

    async def check(self, key_id: str, options: RateLimitOptions, estimated_tokens: int) -> float | None:
        """None if admitted (one request counted, tokens reserved), else the seconds to wait."""
        ...

    async def settle(self, key_id: str, options: RateLimitOptions, estimated_tokens: int,
                     actual_tokens: int) -> None:
        """Replace an admitted request's token reservation with what it really used."""
        ...


class LocalLimiter:
    """This process's limits only: the `RateLimiter` behind the async interface."""

    def __init__(self, local: RateLimiter) -> None:
        self.local = local

    async def check(self, key_id: str, options: RateLimitOptions, estimated_tokens: int) -> float | None:
        return self.local.check(key_id, options, estimated_tokens)

    async def settle(self, key_id: str, options: RateLimitOptions, estimated_tokens: int,
                     actual_tokens: int) -> None:
        self.local.settle(key_id, options, estimated_tokens, actual_tokens)


class RedisLimiter:
    """Limits shared by every replica using the same Redis and key prefix; local while Redis is away.

    A request admitted by Redis and settled locally (Redis went away in between), or the reverse, gets its
    correction applied to the other bucket: a refund is capped at the bucket's capacity, so at worst the
    key gets one request's tokens of extra room once.
    """

    def __init__(self, link: RedisLink, key_prefix: str, local: RateLimiter) -> None:
        self.local = local
        self._link = link
        self._prefix = f"{key_prefix}ratelimit:"
        self._script = link.client.register_script(TOKEN_BUCKET_LUA)  # EVALSHA, reloaded after a restart

    async def check(self, key_id: str, options: RateLimitOptions, estimated_tokens: int) -> float | None:
        if options.requests_per_minute is None and options.tokens_per_minute is None:
            return None
        try:
            reply = await self._run("check", key_id, options, max(0, estimated_tokens))
        except RedisUnavailable:
            return self.local.check(key_id, options, estimated_tokens)
        return None if reply is None else float(reply)

    async def settle(self, key_id: str, options: RateLimitOptions, estimated_tokens: int,
                     actual_tokens: int) -> None:
        if options.tokens_per_minute is None:
            return
        correction = max(0, actual_tokens) - max(0, estimated_tokens)
        if correction == 0:
            return
        try:
            await self._run("settle", key_id, options, correction)
        except RedisUnavailable:
            self.local.settle(key_id, options, estimated_tokens, actual_tokens)

    async def _run(self, op: str, key_id: str, options: RateLimitOptions, amount: int) -> bytes | None:
        args: list[str | int] = [op, options.requests_per_minute or 0, options.tokens_per_minute or 0, amount,
                                 repr(_SLACK)]

        async def call(client: Redis) -> bytes | None:
            reply = await self._script(keys=[self._prefix + key_id], args=args, client=client)
            return reply if isinstance(reply, bytes) else None

        return await self._link.run(call)
