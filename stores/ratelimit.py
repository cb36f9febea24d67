"""Rate-limit counters: one protocol, kept in this process's memory or in Redis.

`MemoryRateLimits` is the default. `RedisRateLimits` is used when
`[server] redis_url` is set: every instance naming the same Redis shares each
gateway's limit exactly, because a single Lua script reads, decides and
counts in one atomic step on the Redis server, on the Redis server's clock.

Both follow `engine.ratelimit` to the letter (fixed windows aligned to the
epoch, an exact sliding log, Retry-After rounded up); the tests run the same
sequences through both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Protocol

import trio

from engine.config import RateLimit
from engine.ratelimit import ALLOWED, Decision, FixedCounter, SlidingLog, retry_after
from stores.redis import REDIS_ERRORS, REDIS_TIMEOUT, Redis

Clock = Callable[[], float]  # seconds since the Unix epoch
KEY_PREFIX = "aigw:rl:"


class RateLimitUnavailable(Exception):
    """The shared counter could not be reached; the caller applies `rate_limit_fail`."""


class RateLimits(Protocol):
    async def hit(self, gateway_id: str, rule: RateLimit) -> Decision:
        """Count one request against `gateway_id`'s `rule`, unless it is over the limit.

        Raises:
            RateLimitUnavailable: the counter's store is out of reach.
        """
        ...


def trio_epoch_clock() -> Clock:
    """Epoch seconds that advance with trio's clock (monotonic; the test clock in tests)."""
    offset = time.time() - trio.current_time()
    return lambda: offset + trio.current_time()


class MemoryRateLimits:
    """Counters in this process: exact, and not shared with other instances."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or trio_epoch_clock()
        self._state: dict[tuple[str, str, int], FixedCounter | SlidingLog] = {}

    async def hit(self, gateway_id: str, rule: RateLimit) -> Decision:
        return self.hit_now(gateway_id, rule)

    def hit_now(self, gateway_id: str, rule: RateLimit) -> Decision:
        """The same, synchronously: nothing here waits."""
        key = (gateway_id, rule.technique, rule.interval)
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = (
                SlidingLog() if rule.technique == "sliding" else FixedCounter()
            )
        return state.hit(rule, self.clock())


# One atomic step per check. Times are integer microseconds: Redis's own TIME
# unless the caller passes one (tests). Fixed: a hash {w: window, n: count}.
# Sliding: a sorted set of allowed requests scored by time. Returns
# {1, 0} when allowed, {0, microseconds to wait} when refused.
SCRIPT = """
local limit = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local now
if ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if ARGV[3] == 'fixed' then
  local window = math.floor(now / interval)
  local ends = (window + 1) * interval
  local state = redis.call('HMGET', KEYS[1], 'w', 'n')
  local count = 0
  if state[1] and tonumber(state[1]) == window then count = tonumber(state[2]) end
  if count >= limit then return {0, string.format('%.0f', ends - now)} end
  redis.call('HSET', KEYS[1], 'w', string.format('%.0f', window), 'n', count + 1)
  redis.call('PEXPIRE', KEYS[1], math.ceil((ends - now) / 1000) + 1000)
  return {1, '0'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - interval))
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, string.format('%.0f', tonumber(oldest[2]) + interval - now)}
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(interval / 1000) + 1000)
return {1, '0'}
"""


class RedisRateLimits:
    """Counters in Redis, shared by every instance that names the same Redis."""

    def __init__(self, redis: Redis, clock: Clock | None = None) -> None:
        self.redis = redis
        self.clock = clock  # None: the Redis server's clock, the same for every instance
        self.script = redis.register_script(SCRIPT)
        self._prefix = os.urandom(6).hex()  # sorted-set members stay unique across instances
        self._sequence = 0

    async def hit(self, gateway_id: str, rule: RateLimit) -> Decision:
        self._sequence += 1
        now = "" if self.clock is None else str(round(self.clock() * 1_000_000))
        key = f"{KEY_PREFIX}{gateway_id}:{rule.technique}:{rule.interval}"
        args = (rule.limit, rule.interval * 1_000_000, rule.technique, self._member(), now)
        reply = None
        try:
            with trio.move_on_after(REDIS_TIMEOUT):
                reply = await self.script(keys=[key], args=args)
        except REDIS_ERRORS as exc:
            raise RateLimitUnavailable(str(exc) or type(exc).__name__) from None
        if reply is None:
            raise RateLimitUnavailable(f"no answer within {REDIS_TIMEOUT}s")
        allowed, wait = reply  # type: ignore[misc]
        if int(allowed):
            return ALLOWED
        return Decision(False, retry_after(int(wait) / 1_000_000))

    def _member(self) -> str:
        return f"{self._prefix}:{self._sequence}"
