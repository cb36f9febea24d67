"""The process's one Redis client, shared by the cache and the rate limiter.

Redis is optional: without `[server] redis_url` nothing here runs. The client
(`stores.resp`) holds a few pooled connections and runs no task of its own;
its idle connections close when the root scope exits.

A Redis that is down must never fail or stall a request: every call is bounded
by a short timeout, and `RedisHealth` reports the outage once (and the
recovery once) instead of once per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from stores.resp import RedisClient, RedisError

log = logging.getLogger("gateway.redis")

# Seconds a Redis call may take before the caller goes on without it.
REDIS_TIMEOUT = 0.25
# Exceptions that mean "Redis did not give an answer we can use".
REDIS_ERRORS = (RedisError, OSError, trio.TooSlowError)

Redis = RedisClient


@asynccontextmanager
async def open_redis(url: str | None) -> AsyncIterator[Redis | None]:
    """A client for `url` that connects on demand, or None when Redis is not configured."""
    if url is None:
        yield None
        return
    client = RedisClient(url, timeout=REDIS_TIMEOUT)
    try:
        yield client
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()


class RedisHealth:
    """Says once that Redis went away and once that it came back.

    `failures` counts failed calls, for metrics.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False
        self.failures = 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if not self.down:
            self.down = True
            log.warning("Redis unavailable for %s (%s); going on without it", self.what, exc)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis is back for %s", self.what)
